// WebGPU in headless Chromium (SwiftShader, with --enable-unsafe-webgpu): the package chooses
// it, and greedy generation matches the wasm CPU path token for token. (Without the flag the
// package test checks the fallback and its reason.)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { start } from './harness.mjs';

const h = await start({ webgpu: true });
after(() => h.close());

test('WebGPU runs where the page has it and agrees with the CPU path; auto keeps the faster device', async () => {
  await h.page.goto(`${h.origin}/tests/browser/webgpu.html`);
  await h.page.waitForFunction(() => window.results, null, { timeout: 120_000 });
  const r = await h.page.evaluate(() => window.results);
  assert.equal(r.fatal, undefined, r.fatal);
  assert.equal(r.device, 'webgpu', `fell back: ${r.fallbackReason}`);
  assert.equal(r.fallbackReason, null);
  assert.equal(r.gpuTimings, null, "device: 'webgpu' takes the GPU without timing");
  const { webgpu, wasm } = r.auto.timings;
  assert.ok(webgpu > 0 && wasm > 0, `timings ${JSON.stringify(r.auto.timings)}`);
  assert.equal(r.auto.device, wasm < webgpu ? 'wasm' : 'webgpu', 'auto keeps the faster device');
  if (r.auto.device === 'wasm') assert.match(r.auto.fallbackReason, /the CPU was faster here: a step took [\d.]+ ms on \d+ threads? against [\d.]+ ms on WebGPU/);
  else assert.equal(r.auto.fallbackReason, null);
  assert.equal(r.auto.masked, 0);
  assert.equal(r.cpuDevice, 'wasm');
  assert.deepEqual(r.gpuIds, r.cpuIds, 'greedy tokens on WebGPU and on the CPU');
  assert.deepEqual(r.gpuPenalized, r.cpuPenalized, 'greedy tokens with a repetition penalty');
  assert.notDeepEqual(r.gpuPenalized, r.gpuPlainConfidence, 'the penalty changed the text');
  assert.equal(r.infillMasked, 0);
  assert.deepEqual(r.wholeRows, { masked: 0, ids: r.gpuIds.length - 12, candidates: true });
  assert.deepEqual(h.offsite, []);
  console.log(`auto: ${r.auto.device} (a step: WebGPU ${webgpu.toFixed(1)} ms, wasm ${wasm.toFixed(1)} ms)`);
  console.log(`24 tokens × 6 steps: WebGPU (SwiftShader) ${r.gpuMs.toFixed(0)} ms, wasm ${r.cpuMs.toFixed(0)} ms`);
});
