// Threads against one thread, side by side in one cross-origin isolated Chromium page: the
// threaded build with `threads: N` (relaxed SIMD where the engine has it) against the
// single-thread SIMD128 build and the relaxed-SIMD build (the same arithmetic), each in its Worker,
// interleaved rounds after a warm-up. Measures a 256-token forward (all logits), a
// 251-token × 10-step generation and a training step (tiny model from scratch; fine-tuning
// the loaded model), each timed call right after an untimed one on the same instance; and a
// 64-token forward after 300 ms idle.
//
// Why the untimed call: this VM's kernel packs runnable threads onto one vCPU after an idle
// spell (`kernel.sched_vcpu_pack`), and in interleaved rounds every call of one instance
// follows the others' (≥ 100 ms): the pool's two threads then start on one vCPU, which costs a
// 64-token forward +20–40 ms (bench/RESULTS.md). The idle row shows that cost.
//   node bench/threads.mjs            (env: MODEL=models/default.gguf THREADS=2 ROUNDS=5 WARM_MS=3000)
import { start } from '../tests/browser/harness.mjs';

const model = process.env.MODEL || 'models/default.gguf';
const threads = Number(process.env.THREADS || 2);
const rounds = Number(process.env.ROUNDS || 5);
const warmMs = Number(process.env.WARM_MS || 3000);

const h = await start({ isolate: true });
h.page.setDefaultTimeout(0);
await h.page.goto(`${h.origin}/bench/threads.html`);
const r = await h.page.evaluate(async ({ model, threads, rounds, warmMs }) => {
  const { DiffusionLM } = await import('/pkg/src/index.js');
  const builds = {
    [`threads ${threads}`]: { threads },
    'simd128, 1 thread': { threads: 1, wasm: '/pkg/dist/unmask_bg.wasm' },
    'relaxed, 1 thread': { threads: 1 },
  };
  const lms = {};
  for (const [k, o] of Object.entries(builds)) lms[k] = await DiffusionLM.load(`/${model}`, { cache: false, device: 'wasm', ...o });
  const corpus = await (await fetch('/www/sample-corpus.txt')).text();
  const n = Math.min(256, lms[`threads ${threads}`].info.maxSequenceLen);
  const ids = Array.from({ length: n }, (_, i) => 5 + ((i * 7919) % 2000));
  const { trainStepMs } = await import('/bench/train-step.js');
  const trainStep = (mode) => (lm) => trainStepMs(lm, corpus, { mode, ...(mode === 'scratch' ? { size: 'tiny' } : {}) });
  const short = ids.slice(0, 64);
  const idle = (lm) => new Promise((r) => setTimeout(r, 300)).then(() => { const t0 = performance.now(); return lm.logits(short).then(() => performance.now() - t0); });
  const runs = {
    [`forward ${n} tokens (all logits)`]: (lm) => lm.logits(ids),
    'forward 64 tokens after 300 ms idle': idle,
    [`generate ${n - 5} tokens × 10 steps`]: async (lm) => { for await (const _ of lm.generate('the', { length: n - 5, steps: 10, priorPenalty: 0, seed: 1, strategy: 'random' })); },
    'train step, tiny from scratch (16 × 64)': trainStep('scratch'),
    'train step, fine-tune the loaded model (16 × 64)': trainStep('finetune'),
  };
  const time = async (f, lm) => { const t0 = performance.now(); const ms = await f(lm); return typeof ms === 'number' ? ms : performance.now() - t0; };
  const out = { threads: Object.fromEntries(Object.entries(lms).map(([k, lm]) => [k, `${lm.threads} (${lm.wasmFeatures})`])), rows: {} };
  for (const [what, f] of Object.entries(runs)) {
    const warm = what.startsWith('train') ? 1 : 0;
    for (const lm of Object.values(lms)) {
      const t0 = performance.now();
      do await f(lm); while (!warm && performance.now() - t0 < warmMs);
    }
    const t = Object.fromEntries(Object.keys(lms).map((k) => [k, []]));
    const n = what.startsWith('train') ? Math.min(3, rounds) : rounds;
    const again = !warm && f !== idle;
    for (let i = 0; i < n; i++) {
      for (const [k, lm] of Object.entries(lms)) {
        if (again) await f(lm);
        t[k].push(await time(f, lm));
      }
    }
    out.rows[what] = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.sort((a, b) => a - b)[v.length >> 1]]));
  }
  for (const lm of Object.values(lms)) await lm.dispose();
  return out;
}, { model, threads, rounds, warmMs });
await h.close();

const names = Object.keys(r.threads);
console.log(`# ${model} in Chromium, cross-origin isolated (medians of ${rounds} interleaved rounds, each timed call right after an untimed one but the idle row's; training: 3)`);
console.log(`# threads: ${names.map((k) => `${k}: ${r.threads[k]}`).join('; ')}\n`);
// The threaded build runs the relaxed one's arithmetic where the engine has relaxed SIMD (the
// same tokens, bit for bit): that is the speed-up threads give; the SIMD128 column is the
// single-thread build of engines without it.
console.log(`| measure | ${names.join(' | ')} | speed-up over ${names[2]} | over ${names[1]} |`);
console.log(`|---|${names.map(() => '---|').join('')}---|---|`);
for (const [what, t] of Object.entries(r.rows)) {
  const [a, b, c] = names.map((k) => t[k]);
  console.log(`| ${what} | ${names.map((k) => `${t[k].toFixed(0)} ms`).join(' | ')} | **${(c / a).toFixed(2)}×** | ${(b / a).toFixed(2)}× |`);
}
