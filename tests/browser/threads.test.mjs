// Threads in Chromium. Served cross-origin isolated (COOP/COEP, as scripts/serve does), the
// default `threads: 'auto'` runs the threaded relaxed-SIMD build on more than one thread;
// served without, one thread with the reason. Either way the tokens and logits equal the
// single-thread relaxed-SIMD build's, bit for bit; and disposing threaded instances
// mid-generation leaves the page able to load and run another.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { start } from './harness.mjs';

async function results(isolate) {
  // Memory measured at once instead of at the next garbage collection.
  const h = await start({ isolate, flags: ['--enable-blink-features=ForceEagerMeasureMemory'] });
  try {
    await h.page.goto(`${h.origin}/tests/browser/threads.html`);
    await h.page.waitForFunction(() => window.results, null, { timeout: 300_000 });
    const r = await h.page.evaluate(() => window.results);
    assert.equal(r.fatal, undefined, r.fatal);
    assert.deepEqual(h.offsite, []);
    return r;
  } finally {
    await h.close();
  }
}

function sameAsSingle(r) {
  assert.equal(r.single.threads, 1);
  assert.equal(r.single.features, 'simd128+relaxed');
  assert.deepEqual(r.auto.greedy, r.single.greedy, 'greedy tokens');
  assert.deepEqual(r.auto.seeded, r.single.seeded, 'seeded tokens');
  const differ = r.auto.logits.findIndex((v, i) => !Object.is(v, r.single.logits[i]));
  assert.equal(differ, -1, `logit ${differ} differs: ${r.auto.logits[differ]} vs ${r.single.logits[differ]}`);
}

test('cross-origin isolated: more than one thread, the same tokens as one', { timeout: 400_000 }, async () => {
  const r = await results(true);
  assert.equal(r.isolated, true);
  assert.equal(r.auto.features, 'simd128+relaxed+threads', `${r.auto.features} (${r.auto.reason})`);
  assert.equal(r.auto.threads, Math.min(4, r.cores));
  assert.ok(r.auto.threads > 1, `threads ${r.auto.threads}: ${r.auto.reason}`);
  assert.equal(r.auto.reason, null);
  sameAsSingle(r);
  assert.equal(r.churn.done, 20);
  // Each instance's Worker, pool workers and wasm memory go with dispose: 18 more rounds leave
  // the page's memory (workers included) within half of what it was after the second.
  const { second, last } = r.churn.bytes;
  assert.ok(second > 0 && last > 0, `memory not measured: ${JSON.stringify(r.churn.bytes)}`);
  assert.ok(last < second * 1.5, `page memory ${second} bytes after 2 rounds, ${last} after 20`);
  // The shipped model is lower-case: the prompt comes back as its pieces.
  assert.ok(r.churn.text.startsWith('it was a dark and stormy night,'), r.churn.text);
  console.log(`Chromium: ${r.auto.threads} threads (${r.cores} cores), same tokens and logits as the single-thread build; page memory ${(second / 2 ** 20).toFixed(0)} MiB after 2 dispose rounds, ${(last / 2 ** 20).toFixed(0)} MiB after 20`);
});

test('not isolated: one thread, with the reason, the same tokens', { timeout: 400_000 }, async () => {
  const r = await results(false);
  assert.equal(r.isolated, false);
  assert.equal(r.auto.threads, 1);
  assert.match(r.auto.reason, /cross-origin isolated/);
  assert.equal(r.auto.features, 'simd128+relaxed');
  sameAsSingle(r);
});
