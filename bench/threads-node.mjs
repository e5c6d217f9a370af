// Threads against one thread in Node: runs itself once per thread count (one realm holds one
// module and pool) and prints medians side by side: a 256-token forward (all logits), a
// 251-token × 10-step generation, and training steps (tiny from scratch; fine-tuning the model).
//   node bench/threads-node.mjs       (env: MODEL=models/default.gguf THREADS=1,2 ROUNDS=5)
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DiffusionLM } from '../pkg/src/index.js';
import { trainStepMs } from './train-step.js';

const model = process.env.MODEL || fileURLToPath(new URL('../models/default.gguf', import.meta.url));
const rounds = Number(process.env.ROUNDS || 5);
const median = (v) => v.sort((a, b) => a - b)[v.length >> 1];

async function measure(threads) {
  const lm = await DiffusionLM.load(new Uint8Array(await readFile(model)), { threads });
  const n = Math.min(256, lm.info.maxSequenceLen);
  const ids = Array.from({ length: n }, (_, i) => 5 + ((i * 7919) % 2000));
  const corpus = await readFile(new URL('../www/sample-corpus.txt', import.meta.url), 'utf8');
  const time = async (f, k = rounds) => {
    await f();
    const t = [];
    for (let i = 0; i < k; i++) { const t0 = performance.now(); await f(); t.push(performance.now() - t0); }
    return median(t);
  };
  const trainStep = (opts) => () => trainStepMs(lm, corpus, opts);
  const steps = async (f, k) => { const t = []; for (let i = 0; i < k; i++) t.push(await f()); return median(t); };
  const out = {
    threads: lm.threads,
    [`forward ${n} tokens (all logits)`]: await time(() => lm.logits(ids)),
    [`generate ${n - 5} tokens × 10 steps`]: await time(async () => { for await (const _ of lm.generate('the', { length: n - 5, steps: 10, priorPenalty: 0, seed: 1, strategy: 'random' })); }, 3),
    'train step, tiny from scratch (16 × 64)': await steps(trainStep({ mode: 'scratch', size: 'tiny' }), 3),
    'train step, fine-tune the model (16 × 64)': await steps(trainStep({ mode: 'finetune' }), 2),
  };
  await lm.dispose();
  return out;
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(await measure(Number(process.argv[3]))));
} else {
  const counts = (process.env.THREADS || '1,2').split(',').map(Number);
  const self = fileURLToPath(import.meta.url);
  const r = counts.map((t) => JSON.parse(execFileSync(process.execPath, [self, '--child', String(t)], { encoding: 'utf8', env: { ...process.env }, stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').at(-1)));
  console.log(`# Node ${process.version}, ${model}: medians (training: 3 steps, fine-tune 2)\n`);
  console.log(`| measure | ${r.map((x) => `${x.threads} thread${x.threads > 1 ? 's' : ''}`).join(' | ')} | speed-up |`);
  console.log(`|---|${r.map(() => '---|').join('')}---|`);
  for (const k of Object.keys(r[0]).filter((k) => k !== 'threads')) {
    console.log(`| ${k} | ${r.map((x) => `${x[k].toFixed(0)} ms`).join(' | ')} | ${(r[0][k] / r.at(-1)[k]).toFixed(2)}× |`);
  }
}
