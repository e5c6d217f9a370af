// Figures for the package in Node (one thread): load time, generation steps/s, training
// tokens/s of tiny/small models trained from scratch, and the wasm memory high-water mark.
//   node bench/node.mjs [model.gguf]
import { readFile, stat } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { DiffusionLM } from '../pkg/src/index.js';

const model = process.argv[2] || new URL('../models/default.gguf', import.meta.url).pathname;
const wasm = await readFile(new URL('../pkg/dist/unmask_bg.wasm', import.meta.url));
console.log(`wasm: ${(wasm.byteLength / 1e6).toFixed(2)} MB raw, ${(gzipSync(wasm, { level: 9 }).byteLength / 1e6).toFixed(2)} MB gzip`);
const t0 = performance.now();
const lm = await DiffusionLM.load(model);
console.log(`load ${model} (${((await stat(model)).size / 1e6).toFixed(2)} MB): ${(performance.now() - t0).toFixed(0)} ms`);
const len = Math.min(256, lm.info.maxSequenceLen - 8);
for (const strategy of ['random', 'confidence']) {
  let ms = 0, n = 0;
  for await (const s of lm.generate('the', { length: len, steps: 10, priorPenalty: 0, strategy })) { ms += s.ms; n++; }
  console.log(`generate ${len} tokens, 10 steps (${strategy}): ${ms.toFixed(0)} ms, ${(1000 * n / ms).toFixed(2)} steps/s`);
}
const corpus = await readFile(new URL('../www/sample-corpus.txt', import.meta.url), 'utf8');
for (const size of ['tiny', 'small']) {
  const m = await DiffusionLM.load(await readFile(model));
  let last;
  for await (const r of m.train(corpus, { mode: 'scratch', size, vocab: 1024, steps: 20, seqLen: 64, batchSize: 16 })) last = r;
  console.log(`train ${size} from scratch (batch 16 × 64): ${last.tokensPerSec.toFixed(0)} tok/s, loss ${last.loss.toFixed(3)}; wasm memory ${(await m.memoryBytes() / 2 ** 20).toFixed(0)} MiB`);
  await m.dispose();
}
await lm.dispose();
