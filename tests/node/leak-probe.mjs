// Measures memory over repeated use of the package and prints it as JSON. Run as its own
// process by leaks.test.mjs: the test runner's own bookkeeping (async context per promise)
// would otherwise show up as heap growth that is not ours.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';

import { DiffusionLM } from '../../pkg/src/index.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const bytes = new Uint8Array(await readFile(fileURLToPath(new URL('../../target/models/fixture.gguf', import.meta.url))));

/** JS heap after full collections (the smallest of three readings). */
function heap() {
  let min = Infinity;
  for (let i = 0; i < 3; i++) {
    gc();
    min = Math.min(min, process.memoryUsage().heapUsed);
  }
  return min;
}

/** `rounds` calls of `round`; wasm memory and JS heap after the first and after the last. */
async function measure(rounds, round) {
  const first = { wasm: await round(0), heap: heap() };
  let wasm;
  for (let i = 1; i < rounds; i++) wasm = await round(i);
  return { first, last: { wasm, heap: heap() } };
}

const lm = await DiffusionLM.load(bytes);
const generations = await measure(100, async (i) => {
  await lm.generateText('The cat', { length: 24, steps: 6, seed: i, candidates: 3 });
  return lm.memoryBytes();
});
await lm.dispose();

const loads = await measure(20, async () => {
  const m = await DiffusionLM.load(bytes);
  await m.generateText('A boat', { length: 8, steps: 2 });
  const w = await m.memoryBytes();
  await m.dispose();
  return w;
});

console.log(JSON.stringify({ generations, loads }));
