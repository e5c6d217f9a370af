// The npm package in headless Chromium: Worker mode, progress, Cache API, abort, typed errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { start } from './harness.mjs';

const h = await start();
after(() => h.close());

test('the package runs in a Worker in Chromium', async () => {
  await h.page.goto(`${h.origin}/tests/browser/package.html`);
  await h.page.waitForFunction(() => window.results, null, { timeout: 60_000 });
  const r = await h.page.evaluate(() => window.results);
  assert.equal(r.fatal, undefined, r.fatal);
  assert.ok(r.done);
  assert.equal(r.device, 'wasm');
  assert.match(r.fallbackReason, /WebGPU|navigator\.gpu/);
  const phases = r.progress.map((p) => p.phase);
  assert.equal(phases[0], 'fetch');
  assert.deepEqual(phases.slice(-3), ['compile', 'compile', 'ready']);
  const last = r.progress.filter((p) => p.phase === 'fetch').at(-1);
  assert.ok(last.total > 0 && last.loaded === last.total, 'byte-accurate fetch progress');
  assert.equal(r.steps.length, 8);
  for (let i = 1; i < r.steps.length; i++) assert.ok(r.steps[i].masked < r.steps[i - 1].masked);
  assert.equal(r.steps.at(-1).masked, 0);
  for (let i = 0; i < r.start.ids.length; i++) if (r.start.fixed[i]) assert.equal(r.steps.at(-1).ids[i], r.start.ids[i]);
  assert.ok(r.text.startsWith('The cat'));
  assert.deepEqual(r.inlineIds, r.steps.at(-1).ids, 'Worker and inline paths agree');
  assert.ok(r.cachedPhases.includes('cache') && !r.cachedPhases.includes('fetch'), `${r.cachedPhases}`);
  assert.deepEqual(r.abortedAfter, [1, 2]);
  assert.equal(r.afterAbort, 2);
  assert.deepEqual(r.errors, { abort: 'AbortError', 404: 'FetchError', notGguf: 'ModelError', options: 'OptionsError', webgpu: 'DeviceError' });
  // Chromium 114+ validates relaxed SIMD: the fused-multiply-add build must be the one running,
  // and agree with transformers like the SIMD128 build does in Node.
  assert.equal(r.wasmFeatures, 'simd128+relaxed');
  assert.ok(r.maxLogitDiff <= 1e-4, `relaxed build vs transformers: max |Δlogit| ${r.maxLogitDiff}`);
  console.log(`relaxed-SIMD build vs transformers: max |Δlogit| = ${r.maxLogitDiff.toExponential(2)}`);
  // Its q8_0 path is the integer kernel: bounded like tests/quantized.rs (≤ 1.2e-1 on the
  // random fixtures; 4.9e-2 measured natively for this one).
  assert.ok(r.q8RelRms > 0 && r.q8RelRms <= 1.2e-1, `q8_0 through the int8 kernel: relative RMS ${r.q8RelRms}`);
  console.log(`relaxed-SIMD build, q8_0 fixture (int8 kernel) vs transformers: relative RMS ${r.q8RelRms.toExponential(2)}`);
  assert.deepEqual(h.offsite, []);
  console.log(`steps: ${r.steps.map((s) => s.ms.toFixed(1)).join(', ')} ms`);
});
