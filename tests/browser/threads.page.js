// The threaded build in the page: loads the shipped model with the default `threads: 'auto'`
// and with `threads: 1` (the single-thread relaxed-SIMD build: the same arithmetic), and publishes
// what each ran and generated on window.results. Then disposes threaded instances in the
// middle of a generation, 20 times, measuring the page's memory (workers included) after the
// second and the last, and checks a new one still works.
import { DiffusionLM } from '../../pkg/src/index.js';

const MODEL = '/models/default.gguf';
const PROMPT = 'It was a dark and stormy night,';

async function tokens(lm, opts) {
  let last;
  for await (const s of lm.generate(PROMPT, { length: 24, steps: 12, ...opts })) last = s;
  return Array.from(last.ids);
}

async function probe(opts) {
  const lm = await DiffusionLM.load(MODEL, { cache: false, device: 'wasm', ...opts });
  const ids = Array.from({ length: 256 }, (_, i) => 1000 + ((i * 37) % 5000));
  const r = {
    threads: lm.threads, reason: lm.threadsReason, features: lm.wasmFeatures,
    greedy: await tokens(lm, { topK: 1 }), seeded: await tokens(lm, { seed: 7 }),
    logits: Array.from(await lm.logits(ids)),
  };
  await lm.dispose();
  return r;
}

// The page's memory with its workers (cross-origin isolated pages only); null without.
async function measure() {
  if (!performance.measureUserAgentSpecificMemory) return null;
  return (await performance.measureUserAgentSpecificMemory()).bytes;
}

async function disposeMidStep(rounds) {
  let done = 0;
  const bytes = {};
  for (let i = 0; i < rounds; i++) {
    const lm = await DiffusionLM.load(MODEL, { device: 'wasm' });
    const it = lm.generate(PROMPT, { length: 64, steps: 32, seed: i })[Symbol.asyncIterator]();
    await it.next();
    const pending = it.next().catch((e) => e);
    await lm.dispose();
    await pending;
    done++;
    if (i === 1) bytes.second = await measure();
  }
  bytes.last = await measure();
  const lm = await DiffusionLM.load(MODEL, { device: 'wasm' });
  const text = await lm.generateText(PROMPT, { length: 8, steps: 4 });
  await lm.dispose();
  return { done, text, bytes };
}

try {
  const auto = await probe({});
  const single = await probe({ threads: 1 });
  const churn = await disposeMidStep(20);
  window.results = { isolated: globalThis.crossOriginIsolated, cores: navigator.hardwareConcurrency, auto, single, churn };
} catch (e) {
  window.results = { fatal: `${e?.name}: ${e?.message}` };
}
document.getElementById('status').textContent = 'done';
