// Unmask: text diffusion with BERT/RoBERTa-family models, in a Web Worker or inline.
import {
  AbortError, BusyError, DisposedError, FetchError, InternalError, OptionsError,
  TrainingError, UnmaskError, toTypedError,
} from './errors.js';
import { samplingOptions, trainOptions } from './options.js';
import { readSource, clearCache } from './source.js';
import { checkThreads } from './pool.js';

export * from './errors.js';

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

/** Calls the host in this thread. */
class InlineTransport {
  async init() {
    const { Host } = await import('./host.js');
    this.host = new Host();
  }
  async call(op, args) {
    try {
      return await this.host.call(op, args);
    } catch (e) {
      throw toTypedError(e);
    }
  }
  terminate() { this.host = null; }
}

/** Calls a host in a module Worker; one message round trip per operation. */
class WorkerTransport {
  constructor(url) {
    // Written out literally so bundlers (Vite, webpack) find and bundle the worker.
    this.worker = url
      ? new Worker(url, { type: 'module' })
      : new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.next = 1;
    this.worker.onmessage = (ev) => {
      const { id, ok, value, error } = ev.data;
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      if (ok) p.resolve(value); else p.reject(toTypedError(error));
    };
    this.worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.fail(new InternalError(`the worker failed: ${ev.message || 'unknown error'}`));
    };
  }
  async init() {}
  fail(err) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
  call(op, args, transfer = []) {
    return new Promise((resolve, reject) => {
      const id = this.next++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }
  terminate() {
    this.worker.terminate();
    this.fail(new DisposedError('the model was disposed'));
  }
}

/** A FIFO mutex: concurrent calls on one instance run one after another. */
class Lock {
  constructor() { this.tail = Promise.resolve(); }
  acquire() {
    let release;
    const held = new Promise((r) => { release = r; });
    const ready = this.tail.then(() => release);
    this.tail = this.tail.then(() => held);
    return ready;
  }
}

function checkDevice(requested) {
  if (!['auto', 'wasm', 'webgpu'].includes(requested)) {
    throw new OptionsError(`device must be 'auto', 'wasm' or 'webgpu', got ${JSON.stringify(requested)}`);
  }
  return requested;
}

export class DiffusionLM {
  /** @private */
  constructor(transport, { info, device, fallbackReason, deviceTimings, wasmFeatures, threads, threadsReason, options }) {
    this._t = transport;
    this._lock = new Lock();
    this._disposed = false;
    this.info = info;
    this.device = device;
    this.fallbackReason = fallbackReason;
    /**
     * With `device: 'auto'` where WebGPU runs: one generation step's milliseconds on each,
     * `{webgpu, wasm}`, timed while loading; the faster one is `device`. Otherwise null.
     */
    this.deviceTimings = deviceTimings ?? null;
    /**
     * Which build of the core runs: 'simd128', 'simd128+relaxed' (fused multiply-add, 8-bit
     * dot), or either with '+threads' (shared memory and a pool of workers).
     */
    this.wasmFeatures = wasmFeatures;
    /** Threads the CPU kernels run on. */
    this.threads = threads;
    /** Why `threads` is 1 (or fewer than asked for), or null. */
    this.threadsReason = threadsReason;
    /**
     * Every option `generate`/`infill`/`edit` (`sampling`) and `train` (`training`) take, from
     * their one definition in the core: `{name, flag, help, kind, default}` each.
     */
    this.options = options;
  }

  /**
   * Loads a GGUF model from a URL, a path (Node), bytes, a Blob or a File.
   * Progress: `{phase: 'fetch'|'cache'|'compile'|'ready', loaded, total}`.
   */
  static async load(source, opts = {}) {
    const known = new Set(['device', 'threads', 'onProgress', 'signal', 'cache', 'worker', 'workerUrl', 'wasm']);
    for (const k of Object.keys(opts)) if (!known.has(k)) throw new OptionsError(`unknown option \`${k}\``);
    const threads = opts.threads ?? 'auto';
    const badThreads = checkThreads(threads);
    if (badThreads) throw new OptionsError(badThreads);
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') {
      throw new OptionsError('onProgress must be a function');
    }
    const requested = checkDevice(opts.device ?? 'auto');
    const progress = opts.onProgress || (() => {});
    const signal = opts.signal;
    const bytes = await readSource(source, { progress, signal, cache: opts.cache !== false });
    if (signal?.aborted) throw new AbortError('loading was aborted');
    const useWorker = opts.worker ?? (!isNode && typeof Worker !== 'undefined');
    const transport = useWorker ? new WorkerTransport(opts.workerUrl) : new InlineTransport();
    progress({ phase: 'compile', loaded: 0, total: 1 });
    try {
      await transport.init();
      // The host picks the device: WebGPU needs the adapter, which lives where the engine runs.
      const loaded = await transport.call(
        'load', { bytes, wasm: opts.wasm, device: requested, threads }, useWorker ? [bytes.buffer] : []);
      progress({ phase: 'compile', loaded: 1, total: 1 });
      progress({ phase: 'ready', loaded: 1, total: 1 });
      return new DiffusionLM(transport, loaded);
    } catch (e) {
      transport.terminate();
      throw toTypedError(e);
    }
  }

  _alive() {
    if (this._disposed) throw new DisposedError('this model was disposed');
  }

  /**
   * Denoising steps for `prompt` followed by `length` masks. Returns an async iterable of
   * steps; `.canvas` resolves to the starting canvas. Breaking out of the loop, or aborting
   * `signal`, stops between steps.
   */
  generate(prompt, opts = {}) {
    if (typeof prompt !== 'string') throw new OptionsError('prompt must be a string');
    const o = samplingOptions(this.options, opts);
    return this._run({ prompt, length: o.length ?? 32, pins: o.pins ?? [], options: o.options }, o);
  }

  /** Fills the `[MASK]` / `[MASK:n]` spans of a template, e.g. `The [MASK:2] sat on the [MASK].` */
  infill(template, opts = {}) {
    if (typeof template !== 'string') throw new OptionsError('template must be a string');
    const o = samplingOptions(this.options, opts);
    if (o.length !== undefined) throw new OptionsError('length does not apply to infill: write [MASK:n] spans');
    return this._run({ template, pins: o.pins ?? [], options: o.options }, o);
  }

  /**
   * Edits a finished canvas in place: re-masks `positions` and regenerates only those.
   * `canvas` is `{ids, fixed}` as found on a step (`step.ids`) and on `.canvas`.
   */
  edit(canvas, positions, opts = {}) {
    if (!canvas || !canvas.ids || !canvas.fixed) throw new OptionsError('canvas must be {ids, fixed}');
    if (!Array.isArray(positions) && !ArrayBuffer.isView(positions)) throw new OptionsError('positions must be an array');
    const o = samplingOptions(this.options, opts);
    const request = {
      canvas: { ids: Array.from(canvas.ids), fixed: Array.from(canvas.fixed, Boolean) },
      remask: Array.from(positions),
      options: o.options,
    };
    return this._run(request, o);
  }

  /** The final text of a generation. */
  async generateText(prompt, opts = {}) {
    let last;
    const it = this.generate(prompt, opts);
    for await (const s of it) last = s;
    const c = await it.canvas;
    return last ? last.text : c.text;
  }

  /**
   * MLM logits of one sequence of token ids at `positions` (default: every position), as a
   * `Float32Array` of `positions.length × vocabSize` (row-major): for scoring, and for
   * comparing engines on the same input.
   */
  async logits(ids, positions) {
    this._alive();
    const arr = (v, what) => {
      if (!v || typeof v.length !== 'number' || !Array.from(v).every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)) {
        throw new OptionsError(`${what} must be an array of non-negative integers`);
      }
      return Uint32Array.from(v);
    };
    const ids32 = arr(ids, 'ids');
    const pos = positions === undefined ? Uint32Array.from(ids32.keys()) : arr(positions, 'positions');
    // The engine already hands back a fresh Float32Array (copied out of wasm memory, or
    // transferred from the worker): a second copy cost 16 MB per call at 256 × 16k.
    const out = await this._t.call('logits', [ids32, pos]);
    return out instanceof Float32Array ? out : new Float32Array(out);
  }

  /** Text for people from ids (special tokens dropped, masks as `mask`). */
  async render(ids, mask = '[MASK]') {
    this._alive();
    return this._t.call('render', [Uint32Array.from(ids), mask]);
  }

  /**
   * Trains on `corpus` (text; blank lines separate documents): `mode: 'finetune'` continues
   * the loaded model, `'scratch'` trains a tokenizer and a tiny model. An async iterator of
   * `{step, steps, loss, objective, lr, gradNorm, tokensPerSec, ms, eval?, sample?}`; `.start`
   * resolves to the corpus and model sizes. When the run ends, is stopped or aborted, the
   * instance generates with the weights the `keep` option names (by default a fine-tune's
   * best evaluated ones, a new model's last; `.kept` says which step's) unless `adopt: false`.
   */
  train(corpus, opts = {}) {
    if (typeof corpus !== 'string') throw new OptionsError('corpus must be a string');
    return new TrainStream(this, corpus, trainOptions(this.options, opts));
  }

  /** Bytes of the engine's wasm memory (it only grows: the high-water mark). */
  async memoryBytes() {
    this._alive();
    return this._t.call('memory');
  }

  /** The model as GGUF bytes (`f32`, `f16`, `q8_0`, `q4_k`) or `safetensors` (f32, HF names). */
  async export(dtype = 'q8_0') {
    this._alive();
    const release = await this._lock.acquire();
    try {
      return await this._t.call(dtype === 'safetensors' ? 'exportSafetensors' : 'exportGguf', dtype === 'safetensors' ? [] : [dtype]);
    } finally {
      release();
    }
  }

  /**
   * The LoRA adapters of the last fine-tune (or of `loadAdapters`) as a small GGUF that
   * `loadAdapters` merges into the same base model again.
   */
  async exportAdapters() {
    this._alive();
    const release = await this._lock.acquire();
    try {
      return await this._t.call('exportAdapters', []);
    } finally {
      release();
    }
  }

  /**
   * Merges adapters saved by `exportAdapters` (URL, path, bytes, Blob or File) into this model,
   * which then generates with them. Refused with a `ModelError` unless they were trained on
   * this very model (its weights' checksum is in the file).
   */
  async loadAdapters(source, opts = {}) {
    this._alive();
    const bytes = await readSource(source, { progress: () => {}, signal: opts.signal, cache: false });
    const release = await this._lock.acquire();
    try {
      this.info = await this._t.call('loadAdapters', [bytes]);
      return this.info;
    } finally {
      release();
    }
  }

  async dispose() {
    if (this._disposed) return;
    this._disposed = true;
    try { await this._t.call('dispose'); } catch { /* already gone */ }
    this._t.terminate();
  }

  _run(request, o) {
    return new StepStream(this, request, o.signal, o.mask);
  }
}

/**
 * An async iterator that holds the instance's lock while it runs: it takes the lock when it
 * opens (first `next()`, or reading its start promise) and gives it back when it ends, is
 * broken out of, fails, or is aborted. Subclasses say what opening and finishing do.
 */
class LockedStream {
  constructor(lm) {
    this._lm = lm;
    this._opened = null;
    this._finished = false;
    this._release = null;
  }

  [Symbol.asyncIterator]() { return this; }

  /** Runs `open()` under the lock, once. */
  _open(open) {
    if (!this._opened) {
      this._opened = (async () => {
        const lm = this._lm;
        lm._alive();
        this._release = await lm._lock.acquire();
        try {
          lm._alive();
          return await open();
        } catch (e) {
          await this._close(false);
          throw toTypedError(e);
        }
      })();
    }
    return this._opened;
  }

  async return() {
    await this._close(true);
    return { done: true, value: undefined };
  }

  async throw(e) {
    await this._close(true);
    throw e;
  }

  /** Ends the stream once: `_finish(early)` while the engine is still ours, then unlock. */
  async _close(early) {
    if (this._finished) return;
    this._finished = true;
    if (this._release && !this._lm._disposed) {
      try { await this._finish(early); } catch { /* the engine is gone */ }
    }
    const r = this._release;
    this._release = null;
    r?.();
  }
}

/** The steps of one generation (see `DiffusionLM.generate`). */
class StepStream extends LockedStream {
  constructor(lm, request, signal, mask) {
    super(lm);
    this._request = request;
    this._signal = signal;
    this._mask = mask;
  }

  /** The starting canvas: `{ids, fixed, pieces, text, total, masked, maskId}`. */
  get canvas() { return this._start(); }

  _aborted() {
    if (this._signal?.aborted) throw new AbortError('generation was aborted');
  }

  _start() {
    return this._open(async () => {
      this._aborted();
      const c = await this._lm._t.call('begin', [this._request, this._mask]);
      return { ...c, ids: Int32Array.from(c.ids) };
    });
  }

  async next() {
    if (this._finished) return { done: true, value: undefined };
    try {
      await this._start();
      this._aborted();
      // The step runs in the engine (on WebGPU it awaits the readback there) and reports the
      // whole canvas after it: nothing about the generation is kept here.
      const t0 = performance.now();
      const s = await this._lm._t.call('step', []);
      const ms = performance.now() - t0;
      if (!s) {
        await this._close(false);
        return { done: true, value: undefined };
      }
      if (s.done) await this._close(false);
      const value = {
        ...s,
        ids: Int32Array.from(s.ids),
        revealed: Int32Array.from(s.revealed),
        redrawn: Int32Array.from(s.redrawn),
        confidence: Float32Array.from(s.confidence),
        ms,
      };
      return { done: false, value };
    } catch (e) {
      await this._close(true);
      throw toTypedError(e);
    }
  }

  /** A generation left early is cancelled in the engine. */
  async _finish(early) {
    if (early) await this._lm._t.call('cancel', []);
  }
}

/** A training run (see `DiffusionLM.train`). */
class TrainStream extends LockedStream {
  constructor(lm, corpus, o) {
    super(lm);
    this._corpus = corpus;
    this._o = o;
    this._step = 0;
    this._tokens = 0;
    this._t0 = 0;
    /** After the run: `{step, elboPerplexity}` of the weights the instance now generates with. */
    this.kept = null;
  }

  /**
   * `{parameters, documents, trainTokens, validTokens, heldOut, samplePrompt, eval}` of the
   * run; `eval` is the loaded model's evaluation when the run keeps its best weights.
   */
  get start() { return this._begin(); }

  _begin() {
    return this._open(async () => {
      const info = await this._lm._t.call('trainBegin', [this._corpus, this._o.request]);
      info.eval ??= null;
      // The core resolves how long the run is (a time budget alone: many steps).
      this._steps = info.steps;
      this._seconds = info.seconds;
      this._t0 = performance.now();
      return info;
    });
  }

  async next() {
    if (this._finished) return { done: true, value: undefined };
    const o = this._o;
    try {
      await this._begin();
      if (o.signal?.aborted) {
        await this._close(true);
        throw new AbortError('training was aborted');
      }
      if (this._step >= this._steps || this._overTime()) {
        await this._close(true);
        return { done: true, value: undefined };
      }
      const t = this._lm._t;
      const t0 = performance.now();
      const r = await t.call('trainStep', [(t0 - this._t0) / 1000]);
      r.ms = performance.now() - t0;
      this._step = r.step;
      this._tokens += r.tokens;
      const value = {
        step: r.step, steps: this._steps, loss: r.loss, objective: r.objective, lr: r.lr, gradNorm: r.gradNorm,
        ms: r.ms, tokensPerSec: this._tokens / ((performance.now() - this._t0) / 1000),
      };
      const last = r.step >= this._steps || this._overTime();
      if (o.evalEvery && (r.step % o.evalEvery === 0 || last)) value.eval = await t.call('trainEvaluate', []);
      if (o.sampleEvery && (r.step % o.sampleEvery === 0 || last)) value.sample = await this._sample();
      return { done: false, value };
    } catch (e) {
      if (e instanceof AbortError) throw e;
      await this._close(false);
      throw toTypedError(e);
    }
  }

  /**
   * Text from the weights as they are now, for `samplePrompt` (by default the first words of
   * the first training document: `start.samplePrompt`) and `sampleLength` tokens, drawn
   * the way the run's samples are (seed 0: every sample of a run comparable): before the first
   * step, the loaded model's. Call it between steps, e.g. for a "before" sample or on a timer.
   */
  async sample() {
    try {
      await this._begin();
      if (this._finished) throw new TrainingError('sample(): this training run has ended');
      return await this._sample();
    } catch (e) {
      throw toTypedError(e);
    }
  }

  /**
   * `{elboPerplexity, loss, heldOut, tokens}` of the weights as they are now (held-out text
   * where the corpus has some). A run that keeps its best weights remembers these if they
   * are the best so far: evaluate as often as Stop should find a recent candidate.
   */
  async evaluate() {
    try {
      await this._begin();
      if (this._finished) throw new TrainingError('evaluate(): this training run has ended');
      return await this._lm._t.call('trainEvaluate', []);
    } catch (e) {
      throw toTypedError(e);
    }
  }

  async _sample() {
    const prompt = this._o.samplePrompt ?? (await this._begin()).samplePrompt;
    return this._lm._t.call('trainSample', [prompt, this._o.sampleLength]);
  }

  /** The run's time budget is spent. */
  _overTime() {
    return this._seconds != null && (performance.now() - this._t0) / 1000 >= this._seconds;
  }

  /**
   * Ends the run. Finished, stopped or aborted (`early`): the weights `keep` names become the
   * generating model (unless `adopt: false`); after an error the old model stays.
   */
  async _finish(early) {
    const lm = this._lm;
    if (early && this._o.adopt && this._step > 0) {
      const k = await lm._t.call('trainKeep', []);
      this.kept = { step: k.step, elboPerplexity: k.elboPerplexity ?? null };
      lm.info = await lm._t.call('trainAdopt', []);
    }
    await lm._t.call('trainEnd', []);
  }
}

DiffusionLM.cache = { clear: clearCache };

export { UnmaskError, BusyError, FetchError };
