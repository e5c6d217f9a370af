// Two builds of Unmask side by side: the package in one headless Chromium page (one thread,
// no worker) and the native CLI (RAYON_NUM_THREADS=1), interleaved A/B rounds after a warm-up,
// on the same model. For "no speed regression" checks of a change against its base commit:
//   git worktree add /tmp/base <rev> && (cd /tmp/base && scripts/build-wasm && cargo build --release)
//   BASE=/tmp/base node bench/ab.mjs
// Options (env): MODEL=models/default.gguf  ROUNDS=7  WARM_MS=3000
//   TRAIN=1 adds training steps in Chromium (a tiny model from scratch, the default fine-tune
//   and a full one, with 1 and 2 threads on the package's workers; medians of ROUNDS steps,
//   ROUNDS / 3 for the full fine-tune).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { start } from '../tests/browser/harness.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const base = process.env.BASE;
if (!base || !existsSync(`${base}/pkg/dist/unmask_bg.wasm`) || !existsSync(`${base}/target/release/unmask`)) {
  throw new Error('BASE must name a checkout with pkg/dist built (scripts/build-wasm) and target/release/unmask');
}
const model = process.env.MODEL || 'models/default.gguf';
const rounds = Number(process.env.ROUNDS || 7);
const warmMs = Number(process.env.WARM_MS || 3000);
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

// The base package is served from inside this checkout (the server's root).
const copy = `${root}target/ab/base`;
rmSync(copy, { recursive: true, force: true });
mkdirSync(copy, { recursive: true });
for (const d of ['src', 'dist']) cpSync(`${base}/pkg/${d}`, `${copy}/${d}`, { recursive: true });

const h = await start();
h.page.setDefaultTimeout(0);
await h.page.goto(`${h.origin}/bench/ab.html`);
const web = await h.page.evaluate(async ({ model, rounds, warmMs }) => {
  const builds = { base: '/target/ab/base/src/index.js', head: '/pkg/src/index.js' };
  const lms = {};
  for (const [k, url] of Object.entries(builds)) lms[k] = await (await import(url)).DiffusionLM.load(`/${model}`, { worker: false, cache: false });
  const max = lms.head.info.maxSequenceLen;
  const n = Math.min(256, max);
  const ids = Array.from({ length: n }, (_, i) => 5 + ((i * 7919) % 2000));
  const len = Math.min(256, max) - 8;
  const runs = {
    forward: (lm) => lm.logits(ids),
    generate: async (lm) => { for await (const _ of lm.generate('the', { length: len, steps: 10, priorPenalty: 0, seed: 1 })); },
  };
  const time = async (f) => { const t0 = performance.now(); await f(); return performance.now() - t0; };
  const out = { tokens: n, genTokens: len };
  for (const [what, f] of Object.entries(runs)) {
    for (const lm of Object.values(lms)) { const t0 = performance.now(); while (performance.now() - t0 < warmMs) await f(lm); }
    const t = { base: [], head: [] };
    for (let r = 0; r < rounds; r++) for (const k of ['base', 'head']) t[k].push(await time(() => f(lms[k])));
    out[what] = { base: t.base.sort((a, b) => a - b)[rounds >> 1], head: t.head.sort((a, b) => a - b)[rounds >> 1] };
  }
  return out;
}, { model, rounds, warmMs });
const train = process.env.TRAIN && await h.page.evaluate(async ({ model, rounds }) => {
  const builds = { base: '/target/ab/base/src/index.js', head: '/pkg/src/index.js' };
  const corpus = await (await fetch('/www/sample-corpus.txt')).text();
  const { trainStepMs } = await import('/bench/train-step.js');
  const lms = {};
  for (const [k, url] of Object.entries(builds)) {
    for (const threads of [1, 2]) lms[`${k} ${threads}`] = await (await import(url)).DiffusionLM.load(`/${model}`, { cache: false, device: 'wasm', threads });
  }
  const out = {};
  const runs = [
    ['tiny from scratch', { mode: 'scratch', size: 'tiny' }, rounds],
    ['default fine-tune (LoRA, top 2)', { mode: 'finetune' }, rounds],
    ['full fine-tune', { mode: 'finetune', method: 'full' }, Math.ceil(rounds / 3)],
  ];
  for (const [what, o, n] of runs) {
    const t = Object.fromEntries(Object.keys(lms).map((k) => [k, []]));
    for (const lm of Object.values(lms)) await trainStepMs(lm, corpus, o);
    for (let r = 0; r < n; r++) for (const [k, lm] of Object.entries(lms)) t[k].push(await trainStepMs(lm, corpus, o));
    out[what] = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.sort((a, b) => a - b)[v.length >> 1]]));
  }
  return out;
}, { model, rounds });
await h.close();

const native = { base: { forward: [], generate: [] }, head: { forward: [], generate: [] } };
const bins = { base: `${base}/target/release/unmask`, head: `${root}target/release/unmask` };
for (let r = 0; r < rounds; r++) {
  for (const [k, bin] of Object.entries(bins)) {
    const o = execFileSync(bin, ['bench', '-m', `${root}${model}`, '--repeats', '3'], { env: { ...process.env, RAYON_NUM_THREADS: '1' }, encoding: 'utf8' });
    native[k].forward.push(Number(o.match(/forward 256 tokens \(all logits\)\s+([\d.]+) ms/)[1]));
    const g = o.match(/generate (\d+) tokens, 10 steps\s+([\d.]+) ms/);
    native.genTokens = g[1];
    native[k].generate.push(Number(g[2]));
  }
}
const row = (label, b, n) => `| ${label} | ${b.toFixed(1)} ms | ${n.toFixed(1)} ms | ${(n / b).toFixed(3)} |`;
console.log(`# ${model}: base ${base} vs this checkout (one thread; medians of ${rounds} interleaved rounds)\n`);
console.log('| measure | base | head | head ÷ base |\n|---|---|---|---|');
console.log(row(`Chromium forward ${web.tokens} tokens (all logits)`, web.forward.base, web.forward.head));
console.log(row(`Chromium generate ${web.genTokens} tokens × 10 steps`, web.generate.base, web.generate.head));
console.log(row('native forward 256 tokens (all logits)', median(native.base.forward), median(native.head.forward)));
console.log(row(`native generate ${native.genTokens} tokens × 10 steps`, median(native.base.generate), median(native.head.generate)));
for (const [what, t] of Object.entries(train || {})) {
  for (const threads of [1, 2]) console.log(row(`Chromium training step, ${what}, ${threads} thread(s)`, t[`base ${threads}`], t[`head ${threads}`]));
}
