// Reliability in headless Chromium: no memory creep over 100 generations or 20 Worker
// load/dispose rounds (< 5 % after the first), panics as typed errors, CSP blocks inline script.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { start } from './harness.mjs';

const h = await start();
after(() => h.close());

test('memory, faults and CSP in Chromium', async () => {
  const cdp = await h.context.newCDPSession(h.page);
  const heaps = {};
  await h.page.goto(`${h.origin}/tests/browser/reliability.html`);
  for (const phase of ['after-first-generation', 'after-100-generations', 'after-first-load', 'after-20-loads']) {
    await h.page.waitForFunction((p) => window.phase === p || window.results, phase, { timeout: 120_000 });
    const fatal = await h.page.evaluate(() => window.results?.fatal);
    assert.equal(fatal, undefined, fatal);
    await cdp.send('HeapProfiler.collectGarbage');
    await cdp.send('HeapProfiler.collectGarbage');
    heaps[phase] = (await cdp.send('Runtime.getHeapUsage')).usedSize;
    await h.page.evaluate(() => window.next());
  }
  await h.page.waitForFunction(() => window.results, null, { timeout: 60_000 });
  const r = await h.page.evaluate(() => window.results);
  assert.equal(r.fatal, undefined, r.fatal);
  const grew = (label, a, b) => {
    const g = (b - a) / a;
    console.log(`${label}: ${(a / 1048576).toFixed(2)} → ${(b / 1048576).toFixed(2)} MiB (${(100 * g).toFixed(2)} %)`);
    assert.ok(g < 0.05, `${label} grew ${(100 * g).toFixed(1)} %`);
  };
  grew('wasm memory, 100 generations', r.wasmAfterFirst, r.wasmAfter100);
  grew('page JS heap, 100 generations', heaps['after-first-generation'], heaps['after-100-generations']);
  grew('page JS heap, 20 Worker loads', heaps['after-first-load'], heaps['after-20-loads']);
  assert.equal(r.fault, 'InternalError');
  assert.equal(r.afterFault, 'InternalError');
  assert.ok(r.otherInstance.startsWith('The cat'));
  assert.equal(r.inlineScriptRan, false, 'inline script must not run under the CSP');
  const refused = h.errors.filter((e) => /inline (script )?execution|Refused to execute inline script/i.test(e));
  assert.equal(refused.length, 1, `CSP console reports: ${h.errors}`);
  assert.deepEqual(h.errors.filter((e) => !refused.includes(e) && !/deliberate fault|panicked/.test(e)), []);
  assert.deepEqual(h.offsite, []);
});
