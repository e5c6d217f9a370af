// Loads the shipped model with `threads` = argv[2] and prints, as JSON, what ran and what it
// made: a greedy (top-k 1) and a seeded generation, the logits of a 256-token sequence, the
// losses of three fine-tuning steps, and whether a run aborted mid-step leaves it working.
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

const corpus = await readFile(fileURLToPath(new URL('../../www/sample-corpus.txt', import.meta.url)), 'utf8');
const losses = [];
for await (const s of lm.train(corpus, { steps: 3, batchSize: 4, seqLen: 64, seed: 3, adopt: false })) losses.push(s.loss);
// Abort a run (inline in Node, a step runs to its end first): the stream ends, and the
// instance and its pool still generate.
const ctl = new AbortController();
let abortedAfter = 0;
try {
  for await (const _ of lm.train(corpus, { steps: 50, batchSize: 4, seqLen: 64, seed: 3, adopt: false, signal: ctl.signal })) {
    if (++abortedAfter === 2) ctl.abort();
  }
} catch (e) {
  if (e.name !== 'AbortError') throw e;
}
const after = await lm.generateText('It was', { length: 6, steps: 3 });
console.log(JSON.stringify({ threads: lm.threads, reason: lm.threadsReason, features: lm.wasmFeatures, greedy, seeded, digest, losses, abortedAfter, after }));
await lm.dispose();
