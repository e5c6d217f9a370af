// The engine host: owns the wasm module and one model, and answers operations by name.
// It runs inside the Worker (browsers, default) or inline (Node, or `worker: false`).
// Four builds of the core: SIMD128 everywhere; SIMD128 + relaxed SIMD (fused multiply-add in
// the GEMM, the 8-bit dot in the integer kernel: ~1.6× faster on the shipped model) where the
// engine validates it (Chrome ≥ 114, Firefox ≥ 120; not Safari or Node 20); and each of the
// two threaded (shared memory, a pool of workers: pool.js) where threads can run. The glue
// modules are named literally so bundlers include them all.
import { planThreads, startPool } from './pool.js';

const BUILDS = {
  simd128: { glue: () => import('../dist/unmask.js'), wasm: '../dist/unmask_bg.wasm' },
  'simd128+relaxed': { glue: () => import('../dist/relaxed/unmask.js'), wasm: '../dist/relaxed/unmask_bg.wasm' },
  'simd128+threads': { glue: () => import('../dist/threads/unmask.js'), wasm: '../dist/threads/unmask_bg.wasm', pool: 'threads' },
  'simd128+relaxed+threads': {
    glue: () => import('../dist/threads-relaxed/unmask.js'), wasm: '../dist/threads-relaxed/unmask_bg.wasm', pool: 'threads-relaxed',
  },
};

// A minimal module whose only function uses f32x4.relaxed_madd: it validates exactly where
// relaxed SIMD is on.
const V128_ZERO = [0xfd, 0x0c, ...new Array(16).fill(0)];
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // functions: one of type 0
  0x0a, 0x3d, 0x01, 0x3b, 0x00, ...V128_ZERO, ...V128_ZERO, ...V128_ZERO, 0xfd, 0x85, 0x02, 0x0b, // code
]);

export function relaxedSimd() {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

// Node-only module, named through a variable so browser bundlers leave it alone.
const NODE_FS = 'node:fs/promises';

let ready;
let wasmExports;
let glue;
let features;
// The realm's threads: `{threads, reason}`, decided by its first load (one pool per module).
let threading;
// Every Host in a realm shares one wasm instance and its memory: after a trap none of them
// can be trusted (in a Worker, the default, that realm holds only one model).
let realmBroken = null;

/**
 * Instantiates the wasm module once per realm, and its thread pool. `wasm` may be bytes, a URL
 * or undefined; `threads` is the load option ('auto' or a number).
 */
async function initWasm(wasm, threads) {
  if (!ready) {
    ready = (async () => {
      const plan = await planThreads(threads, { customWasm: wasm !== undefined });
      // A caller-supplied binary is the baseline build (its glue must match it).
      const relaxed = wasm === undefined && relaxedSimd();
      const build = `simd128${relaxed ? '+relaxed' : ''}${plan.threads > 1 ? '+threads' : ''}`;
      glue = await BUILDS[build].glue();
      let source = wasm;
      if (source === undefined && typeof process !== 'undefined' && process.versions?.node) {
        // Node: read the file next to the glue instead of fetching a file:// URL.
        const { readFile } = await import(/* @vite-ignore */ NODE_FS);
        source = await readFile(new URL(BUILDS[build].wasm, import.meta.url));
      }
      wasmExports = await glue.default(source === undefined ? undefined : { module_or_path: source });
      features = build;
      threading = plan;
      if (plan.threads > 1) {
        try {
          await startPool(glue, plan.threads, BUILDS[build].pool);
        } catch (e) {
          // The module runs on its own thread without a pool.
          threading = { threads: 1, reason: `the thread pool did not start (${e?.message || e})` };
        }
      }
      threading.threads = glue.threads();
    })();
    ready.catch(() => { ready = undefined; });
  }
  await ready;
  // A later load in the same realm shares the module and its pool.
  if (threads !== 'auto' && threads !== threading.threads && !threading.reason) {
    return { threads: threading.threads, reason: `the engine in this realm already runs ${threading.threads} threads (its first load chose them)` };
  }
  return threading;
}

// Steps timed per device when `device: 'auto'` chooses: the first of each warms up (pipeline
// and buffer creation, page faults), the fastest of the rest counts.
const PROBE_STEPS = 3;

/** Milliseconds of one generation step on the GPU or the CPU (the best of a few). */
async function timeStep(engine, gpu) {
  let best = Infinity;
  for (let i = 0; i < PROBE_STEPS; i++) {
    const t0 = performance.now();
    await engine.probeStep(gpu);
    if (i > 0) best = Math.min(best, performance.now() - t0);
  }
  return best;
}

function plain(e) {
  return { name: e?.name || 'Error', message: e?.message || String(e) };
}

export class Host {
  constructor() {
    this.engine = null;
    this.device = 'wasm';
  }

  async call(op, args) {
    if (realmBroken) throw { name: 'InternalError', message: realmBroken };
    try {
      return await this.dispatch(op, args);
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) {
        // A trap (a Rust panic, or memory exhausted) leaves the module's memory in an unknown
        // state: refuse further calls instead of computing on it.
        realmBroken = `internal engine fault (${e.message}); this instance is no longer usable, load the model again${
          typeof WorkerGlobalScope === 'undefined' ? ' in a Worker (the default in browsers) or a new process' : ''}`;
        this.engine = null;
        throw { name: 'InternalError', message: realmBroken };
      }
      throw plain(e);
    }
  }

  async dispatch(op, a) {
    switch (op) {
      case 'load': {
        const { threads, reason: threadsReason } = await initWasm(a.wasm, a.threads ?? 'auto');
        const engine = new glue.Engine(a.bytes);
        let device = 'wasm';
        let fallbackReason = null;
        let deviceTimings = null;
        if (a.device !== 'wasm') {
          // WebGPU where the page has it and the model fits the adapter; otherwise the wasm
          // path, with the reason. `device: 'webgpu'` makes the reason an error instead.
          if (typeof navigator === 'undefined' || !navigator.gpu) fallbackReason = 'navigator.gpu is not available (no WebGPU here)';
          else if (typeof glue.webgpuInit !== 'function') fallbackReason = 'this build has no WebGPU kernels';
          else {
            try {
              const gpu = await glue.webgpuInit();
              engine.attachGpu(gpu);
              device = 'webgpu';
            } catch (e) {
              fallbackReason = `WebGPU failed: ${e?.message || e}`;
            }
          }
          if (device === 'webgpu' && a.device === 'auto') {
            // A small model at short lengths can run faster on the CPU's threads than on an
            // integrated or software GPU: time a step on each and keep the faster.
            try {
              deviceTimings = { webgpu: await timeStep(engine, true), wasm: await timeStep(engine, false) };
            } catch (e) {
              deviceTimings = null;
              engine.detachGpu();
              device = 'wasm';
              fallbackReason = `WebGPU failed its first step: ${e?.message || e}`;
            }
            if (deviceTimings && deviceTimings.wasm < deviceTimings.webgpu) {
              engine.detachGpu();
              device = 'wasm';
              fallbackReason = `the CPU was faster here: a step took ${deviceTimings.wasm.toFixed(1)} ms on ${threads} thread${threads > 1 ? 's' : ''} against ${deviceTimings.webgpu.toFixed(1)} ms on WebGPU`;
            }
          }
          if (a.device === 'webgpu' && device !== 'webgpu') {
            engine.free();
            throw { name: 'DeviceError', message: `WebGPU was requested but ${fallbackReason}` };
          }
        }
        this.engine?.free();
        this.engine = engine;
        this.device = device;
        return { info: engine.info(), wasmFeatures: features, device, fallbackReason, deviceTimings, threads, threadsReason, options: glue.optionSpecs() };
      }
      case 'memory':
        // wasm memory only grows; this is the high-water mark of the module.
        return wasmExports ? wasmExports.memory.buffer.byteLength : 0;
      case 'dispose':
        this.engine?.free();
        this.engine = null;
        return null;
    }
    if (!this.engine) throw { name: 'DisposedError', message: 'no model is loaded' };
    // Any other operation is the engine method of that name, with `a` its arguments: a new
    // engine method needs nothing here.
    if (!isEngineMethod(op)) throw { name: 'OptionsError', message: `unknown operation ${op}` };
    return this.engine[op](...a);
  }
}

/** Methods of the wasm Engine that callers may name (not its memory management). */
function isEngineMethod(op) {
  return typeof op === 'string' && op !== 'constructor' && op !== 'free' && !op.startsWith('_')
    && typeof glue.Engine.prototype[op] === 'function';
}
