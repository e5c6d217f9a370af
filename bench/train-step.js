// Milliseconds of one training step of a run on `corpus`, after the run's set-up and first
// step (tokenizing, allocating, warming up), for the thread benchmarks in Node and Chromium.
export async function trainStepMs(lm, corpus, opts) {
  const it = lm.train(corpus, { steps: 3, adopt: false, ...opts })[Symbol.asyncIterator]();
  await it.next();
  const t0 = performance.now();
  await it.next();
  const ms = performance.now() - t0;
  await it.return?.();
  return ms;
}
