// Fine-tuning the default model in Chromium, per method and thread count: one step of 16 × 64
// tokens on the sample corpus (median of 3 after the first), the 200-step run it implies, and
// the wasm memory after the steps. Every (method, threads) pair loads a fresh instance (wasm
// memory never shrinks); the relaxed single-thread build and the threaded one run in the same
// cross-origin isolated page.
//   node bench/finetune.mjs    (env: MODEL=models/default.gguf METHODS=full,top:2,lora,lora:2 THREADS=1,2)
// WHOLE=1 also runs each fine-tune's 200 steps to the end and reports the run's wall time as a
// user sees it: with the evaluations that keep its best weights (at the start and the end)
// and the kept weights adopted.
import { start } from '../tests/browser/harness.mjs';

const model = process.env.MODEL || 'models/default.gguf';
const methods = (process.env.METHODS || 'full,top:2,lora,lora:2').split(',');
const threads = (process.env.THREADS || '1,2').split(',').map(Number);
const whole = Boolean(process.env.WHOLE);

const h = await start({ isolate: true });
h.page.setDefaultTimeout(0);
await h.page.goto(`${h.origin}/bench/threads.html`);
const rows = await h.page.evaluate(async ({ model, methods, threads, whole }) => {
  const { DiffusionLM } = await import('/pkg/src/index.js');
  const corpus = await (await fetch('/www/sample-corpus.txt')).text();
  const median = (v) => v.sort((a, b) => a - b)[v.length >> 1];
  const out = [];
  for (const spec of methods) {
    const [method, layers] = spec.split(':');
    for (const t of threads) {
      const lm = await DiffusionLM.load(`/${model}`, { cache: false, device: 'wasm', threads: t });
      const t0 = performance.now();
      const run = lm.train(corpus, { mode: 'finetune', steps: 200, adopt: whole, method, ...(layers ? { layers: Number(layers) } : {}) });
      const ms = [];
      for await (const r of run) {
        ms.push(r.ms);
        if (ms.length === 4 && !whole) break;
      }
      const seconds = whole ? (performance.now() - t0) / 1000 : null;
      out.push({ spec, threads: `${lm.threads} (${lm.wasmFeatures})`, step: median(ms.slice(1, 4)), seconds, kept: run.kept, memory: (await lm.memoryBytes()) / 2 ** 20 });
      await lm.dispose();
    }
  }
  return out;
}, { model, methods, threads, whole });
await h.close();

console.log(`# ${model} in Chromium: fine-tuning steps of 16 × 64 tokens (median of 3 after the first)\n`);
console.log(`| method | threads | step | 200 steps |${whole ? ' the whole run | kept |' : ''} wasm memory after |`);
console.log(`|---|---|---|---|${whole ? '---|---|' : ''}---|`);
for (const r of rows) {
  const run = whole ? ` ${r.seconds.toFixed(0)} s | step ${r.kept?.step}, ELBO ppl ${r.kept?.elboPerplexity?.toFixed(1)} |` : '';
  console.log(`| ${r.spec} | ${r.threads} | ${r.step.toFixed(0)} ms | ${(r.step * 200 / 1000).toFixed(0)} s |${run} ${r.memory.toFixed(0)} MiB |`);
}
