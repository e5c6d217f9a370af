// Reliability in the browser: memory over repeated use (inline, where the page can read the
// wasm memory), load → dispose of Worker instances, a Rust panic as a typed error, and the CSP
// stopping inline script. Publishes what it saw on window.results; the test gets the JS heap
// through the DevTools protocol between phases (window.phase / window.next).
import { DiffusionLM, InternalError } from '../../pkg/src/index.js';

const MODEL = '/target/models/fixture.gguf';
const out = {};

/** Lets the test take a heap reading, then continues. */
function checkpoint(name) {
  window.phase = name;
  return new Promise((resolve) => { window.next = resolve; });
}

try {
  const bytes = new Uint8Array(await (await fetch(MODEL)).arrayBuffer());
  const lm = await DiffusionLM.load(bytes, { worker: false });
  const gen = (i) => lm.generateText('The cat', { length: 24, steps: 6, seed: i, candidates: 3 });
  // V8 tiers code up over the first dozens of calls (measured: +78 KiB of heap in
  // generations 1–100, +11 KiB in 100–200, +4 KiB in 200–300): the baseline is taken after ten
  // warm-up generations so that a leak, not the JIT, is what the 5 % bound catches.
  for (let i = 0; i < 10; i++) await gen(i);
  out.wasmAfterFirst = await lm.memoryBytes();
  await checkpoint('after-first-generation');
  for (let i = 10; i < 110; i++) await gen(i);
  out.wasmAfter100 = await lm.memoryBytes();
  await checkpoint('after-100-generations');
  await lm.dispose();

  // Worker instances: each load starts a Worker, dispose ends it.
  for (let i = 0; i < 20; i++) {
    const w = await DiffusionLM.load(bytes.slice());
    await w.generateText('A boat', { length: 8, steps: 2 });
    await w.dispose();
    if (i === 0) await checkpoint('after-first-load');
  }
  await checkpoint('after-20-loads');

  // A panic in one Worker instance: typed error, that instance refuses further calls, a
  // second instance (its own Worker) is unaffected.
  const a = await DiffusionLM.load(bytes.slice());
  const b = await DiffusionLM.load(bytes.slice());
  try { await a._t.call('faultForTesting', []); out.fault = 'no error'; } catch (e) { out.fault = e instanceof InternalError ? e.name : `wrong: ${e?.name}`; }
  try { await a.generateText('The cat', { length: 4, steps: 2 }); out.afterFault = 'still ran'; } catch (e) { out.afterFault = e.name; }
  out.otherInstance = await b.generateText('The cat', { length: 4, steps: 2 });
  await a.dispose();
  await b.dispose();
  out.inlineScriptRan = window.inlineScriptRan === true;
  out.done = true;
} catch (e) {
  out.fatal = `${e?.name}: ${e?.message}`;
}
window.results = out;
document.getElementById('status').textContent = out.fatal ? 'failed' : 'done';
