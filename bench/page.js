// Unmask and ONNX Runtime Web in one page, the same number of threads each (`threads`; the
// page is cross-origin isolated, so both can use a pool), on identical token ids:
// encoder forward (all MLM logits, like ORT's graph output) at 64/128/256 tokens, interleaved
// A/B/A/B after a warm-up, plus a 10-step generation with Unmask. Driven by browser.mjs via
// window.bench(config); results on the returned object.
//
// With threads, each timed call comes right after an untimed one of the same engine: this VM's
// kernel packs runnable threads onto one vCPU after an idle spell (`kernel.sched_vcpu_pack`),
// and in interleaved rounds each engine's pool has sat idle through the other's runs, so a
// first call runs its two threads on one vCPU for a while (both engines' pools alike;
// bench/RESULTS.md).
import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';
import { DiffusionLM } from '../pkg/src/index.js';

ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function ortSession(url) {
  return ort.InferenceSession.create(url, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
}

async function ortForward(session, ids) {
  const n = ids.length;
  const feeds = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
  };
  const out = await session.run(feeds);
  return out.logits.data;
}

/** Runs fn until `ms` have passed (V8 tiers hot wasm up during the first seconds). */
async function warm(fn, ms) {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) await fn();
}

async function time(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

window.bench = async ({ model, lengths, rounds, warmMs, generate, threads }) => {
  // ORT reads its thread count once, when its first session starts: one page per count.
  ort.env.wasm.numThreads = threads;
  const base = `./models/${model}/`;
  const out = { model, lengths: {}, agreement: {} };
  // The pool belongs to an instance's worker; one thread runs on the page, as ORT does.
  const o = { worker: threads > 1, cache: false, threads };
  const ours = { f32: await DiffusionLM.load(base + 'f32.gguf', o), q8: await DiffusionLM.load(base + 'q8_0.gguf', o) };
  out.threads = { unmask: [ours.f32.threads, ours.q8.threads] };
  const theirs = { f32: await ortSession(base + 'model.onnx'), q8: await ortSession(base + 'model.int8.onnx') };
  const vocab = ours.f32.info.vocabSize;
  for (const n of lengths) {
    // Identical ids for both engines: <s>/[CLS] … </s>/[SEP] around pseudo-random words.
    const ids = Array.from({ length: n }, (_, i) => 5 + ((i * 7919) % Math.min(vocab - 5, 2000)));
    const runs = {
      'unmask f32': () => ours.f32.logits(ids),
      'ort fp32': () => ortForward(theirs.f32, ids),
      'unmask q8_0': () => ours.q8.logits(ids),
      'ort int8': () => ortForward(theirs.q8, ids),
    };
    // Same logits from both engines (f32 paths) is what makes the timing a fair comparison.
    const [a, b] = [await runs['unmask f32'](), await runs['ort fp32']()];
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    out.agreement[n] = { maxAbsDiff: maxDiff, elements: a.length, sameLength: a.length === b.length };
    for (const f of Object.values(runs)) await warm(f, warmMs);
    const t = Object.fromEntries(Object.keys(runs).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [k, f] of Object.entries(runs)) {
        if (threads > 1) await f();
        t[k].push(await time(f));
      }
    }
    out.lengths[n] = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
  }
  if (generate) {
    const len = Math.min(256, ours.q8.info.maxSequenceLen) - 8;
    const g = [];
    for (let r = 0; r < 3; r++) {
      g.push(await time(async () => { for await (const _ of ours.q8.generate('the', { length: len, steps: 10, priorPenalty: 0, seed: r })); }));
    }
    out.generate = { tokens: len + 3, steps: 10, ms: median(g) };
  }
  for (const m of Object.values(ours)) await m.dispose();
  for (const s of Object.values(theirs)) await s.release();
  return out;
};
/** The browser's own instruction peaks (bench/peak: independent multiply-add chains, no
 *  memory traffic), for the efficiency of our kernels. `bytes`: that crate's wasm, base64. */
window.peak = async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const { instance } = await WebAssembly.instantiate(bytes);
  const { fma_rounds: fma, dot_rounds: dot } = instance.exports;
  const n = 20_000_000;
  const best = (f) => { let b = Infinity; for (let r = 0; r < 5; r++) { const t0 = performance.now(); f(); b = Math.min(b, performance.now() - t0); } return b / 1e3; };
  return {
    fmaGflops: (n * 12 * 4 * 2) / best(() => fma(n, 0.001)) / 1e9,
    dotGops: (n * 12 * 16 * 2) / best(() => dot(n, 1)) / 1e9,
  };
};
document.getElementById('status').textContent = 'ready';
