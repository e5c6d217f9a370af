// Memory must not creep: 100 generations on one instance, and load → dispose ×20, grow the
// wasm memory and the JS heap by less than 5 % after the first round (leak-probe.mjs measures,
// in a process of its own).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const probe = fileURLToPath(new URL('./leak-probe.mjs', import.meta.url));
const r = JSON.parse(execFileSync(process.execPath, [probe], { encoding: 'utf8' }).trim().split('\n').at(-1));

function grew(label, first, last) {
  const g = (last - first) / first;
  console.log(`${label}: ${(first / 1048576).toFixed(2)} → ${(last / 1048576).toFixed(2)} MiB (${(100 * g).toFixed(2)} %)`);
  assert.ok(g < 0.05, `${label} grew ${(100 * g).toFixed(1)} %`);
}

test('100 generations do not grow memory', () => {
  grew('wasm memory after 100 generations', r.generations.first.wasm, r.generations.last.wasm);
  grew('JS heap after 100 generations', r.generations.first.heap, r.generations.last.heap);
});

test('load → dispose ×20 does not grow memory', () => {
  grew('wasm memory after 20 loads', r.loads.first.wasm, r.loads.last.wasm);
  grew('JS heap after 20 loads', r.loads.first.heap, r.loads.last.heap);
});
