// Fine-tuning the default model in Node, per method: the time of one step of 16 × 64 tokens
// (median of 3 after the first), the 200-step run it implies, and the wasm memory after the
// steps. Each method runs in a fresh process (wasm memory never shrinks), side by side with
// the others on the same machine, so the ratios against `full` are the figures to compare.
//   node bench/finetune-node.mjs    (env: MODEL=models/default.gguf THREADS=1 METHODS=full,top:2,lora,lora:2)
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DiffusionLM } from '../pkg/src/index.js';

const model = process.env.MODEL || fileURLToPath(new URL('../models/default.gguf', import.meta.url));
const median = (v) => v.sort((a, b) => a - b)[v.length >> 1];

/** `lora:2` → `{ method: 'lora', layers: 2 }`. */
function optionsOf(spec) {
  const [method, layers] = spec.split(':');
  return layers ? { method, layers: Number(layers) } : { method };
}

async function measure(spec, threads) {
  const lm = await DiffusionLM.load(new Uint8Array(await readFile(model)), { threads });
  const corpus = await readFile(new URL('../www/sample-corpus.txt', import.meta.url), 'utf8');
  const run = lm.train(corpus, { mode: 'finetune', steps: 200, adopt: false, ...optionsOf(spec) });
  const { parameters } = await run.start;
  const ms = [];
  for await (const r of run) {
    ms.push(r.ms);
    if (ms.length === 4) break;
  }
  const step = median(ms.slice(1));
  const out = { spec, threads: lm.threads, parameters, step, memory: (await lm.memoryBytes()) / 2 ** 20 };
  await lm.dispose();
  return out;
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(await measure(process.argv[3], Number(process.argv[4]))));
} else {
  const specs = (process.env.METHODS || 'full,top:2,lora,lora:2').split(',');
  const threads = Number(process.env.THREADS || 1);
  const self = fileURLToPath(import.meta.url);
  const run = (s) => JSON.parse(execFileSync(process.execPath, [self, '--child', s, String(threads)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').at(-1));
  const r = specs.map(run);
  const full = r.find((x) => x.spec === 'full');
  console.log(`# Node ${process.version}, ${model}, ${r[0].threads} thread(s): fine-tuning steps of 16 × 64 tokens\n`);
  console.log('| method | trained parameters | step | 200 steps | against full | wasm memory after |');
  console.log('|---|---|---|---|---|---|');
  for (const x of r) {
    const vs = full ? `${(full.step / x.step).toFixed(2)}×` : '–';
    console.log(`| ${x.spec} | ${(x.parameters / 1e6).toFixed(2)} M | ${x.step.toFixed(0)} ms | ${(x.step * 200 / 1000).toFixed(0)} s | ${vs} | ${x.memory.toFixed(0)} MiB |`);
  }
}
