// Where a generation spends its time in Chromium: samples the page with the CDP profiler while
// Unmask generates (worker: false, so the engine runs on the sampled thread) and prints self
// time per function, wasm functions by their name-section names.
//   (cd bench && node profile.mjs [model] [file] [generate|forward|finetune])   e.g. default q8_0 generate
// "forward": the encoder forward with all logits at 256 tokens (the ORT comparison's shape);
// "finetune": a step of the default fine-tune (LoRA, 16 × 64 tokens of the sample corpus).
// Models: bench/models/NAME/FILE.gguf (bench/export_onnx.py); `default q8_0` falls back to
// the shipped models/default.gguf.
import { start } from '../tests/browser/harness.mjs';

const model = process.argv[2] || 'default';
const file = process.argv[3] || 'q8_0';
const what = process.argv[4] || 'generate';
const h = await start();
h.page.setDefaultTimeout(0);
// A page without ONNX Runtime (bench/page.html needs `npm ci` in bench/).
await h.page.goto(`${h.origin}/bench/threads.html`);
await h.page.evaluate(async ({ model, file, what }) => {
  const { DiffusionLM } = await import('/pkg/src/index.js');
  const local = `/bench/models/${model}/${file}.gguf`;
  const found = (await fetch(local, { method: 'HEAD' })).ok;
  window.lm = await DiffusionLM.load(found ? local : '/models/default.gguf', { worker: false, cache: false });
  const ids = Array.from({ length: 256 }, (_, i) => 5 + ((i * 7919) % 2000));
  if (what === 'finetune') {
    const run = window.lm.train(await (await fetch('/www/sample-corpus.txt')).text(), { mode: 'finetune', steps: 100000, adopt: false });
    window.gen = async () => { await run.next(); };
  } else {
    window.gen = what === 'forward'
      ? async () => { await window.lm.logits(ids); }
      : async (seed) => { for await (const _ of window.lm.generate('the', { length: 248, steps: 10, priorPenalty: 0, seed })); };
  }
  const t0 = performance.now();
  while (performance.now() - t0 < 4000) await window.gen(0); // let V8 tier the wasm up
}, { model, file, what });
const cdp = await h.context.newCDPSession(h.page);
await cdp.send('Profiler.enable');
await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
await cdp.send('Profiler.start');
const ms = await h.page.evaluate(async () => {
  const t0 = performance.now();
  for (let s = 1; s <= 3; s++) await window.gen(s);
  return (performance.now() - t0) / 3;
});
const { profile } = await cdp.send('Profiler.stop');
const self = new Map();
const dt = new Map();
for (let i = 0; i < profile.samples.length; i++) dt.set(i, profile.timeDeltas[i] || 0);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
let total = 0;
profile.samples.forEach((id, i) => {
  const n = byId.get(id);
  const name = n.callFrame.functionName || `(${n.callFrame.url.split('/').pop() || 'anonymous'})`;
  const t = profile.timeDeltas[i + 1] ?? 0;
  self.set(name, (self.get(name) || 0) + t);
  total += t;
});
const label = { forward: 'forward, 256 tokens, all logits', generate: 'generation of 251 tokens × 10 steps', finetune: 'a LoRA fine-tuning step, 16 × 64 tokens' }[what];
console.log(`${model} ${file}: ${label}, ${ms.toFixed(0)} ms (mean of 3)\n`);
console.log('| self % | function |\n|---|---|');
for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`| ${(100 * t / total).toFixed(1)} | ${name.slice(0, 110)} |`);
// Inclusive time of our own functions (a sample counts once for each distinct caller on its
// stack): which op a kernel's time belongs to, where self time names only the kernel.
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
const inclusive = new Map();
profile.samples.forEach((id, i) => {
  const t = profile.timeDeltas[i + 1] ?? 0;
  const seen = new Set();
  for (let n = id; n !== undefined; n = parent.get(n)) {
    const name = byId.get(n).callFrame.functionName.replace(/::h[0-9a-f]{16}$/, '');
    if (name.startsWith('unmask::') || name.startsWith('<unmask::')) seen.add(name);
  }
  for (const name of seen) inclusive.set(name, (inclusive.get(name) || 0) + t);
});
console.log('\n| inclusive % | function |\n|---|---|');
for (const [name, t] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 45)) console.log(`| ${(100 * t / total).toFixed(1)} | ${name.slice(0, 110)} |`);
await h.close();
