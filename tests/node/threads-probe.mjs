// Loads the shipped model with `threads` = argv[2] and prints, as JSON, what ran and what it
// made: a greedy (top-k 1) and a seeded generation, and the logits of a 256-token sequence.
// Run as its own process by threads.test.mjs: one Node realm holds one wasm module and pool.
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';

import { DiffusionLM } from '../../pkg/src/index.js';

const threads = process.argv[2] === 'auto' ? 'auto' : Number(process.argv[2]);
const bytes = new Uint8Array(await readFile(fileURLToPath(new URL('../../models/default.gguf', import.meta.url))));
const lm = await DiffusionLM.load(bytes, { threads });
const tokens = async (opts) => {
  let last;
  for await (const s of lm.generate('It was a dark and stormy night,', { length: 24, steps: 12, ...opts })) last = s;
  return Array.from(last.ids);
};
const greedy = await tokens({ topK: 1 });
const seeded = await tokens({ seed: 7 });
const ids = Array.from({ length: 256 }, (_, i) => 1000 + ((i * 37) % 5000));
const logits = await lm.logits(ids);
const digest = createHash('sha256').update(new Uint8Array(logits.buffer)).digest('hex');
console.log(JSON.stringify({ threads: lm.threads, reason: lm.threadsReason, features: lm.wasmFeatures, greedy, seeded, digest }));
await lm.dispose();
