// Threads in Node: `threads: 2` runs the threaded build on a pool of two worker threads, and
// gives the same tokens and the same logits, bit for bit, as one thread (the single-thread
// SIMD128 build: Node 20 has no relaxed SIMD, so both run the same arithmetic); training
// gives the same losses, and a run aborted mid-step leaves the pool working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const probe = fileURLToPath(new URL('./threads-probe.mjs', import.meta.url));
const run = (threads) => JSON.parse(execFileSync(process.execPath, [probe, String(threads)], { encoding: 'utf8' }).trim().split('\n').at(-1));

test('two threads give the same tokens, logits and training losses as one', () => {
  const one = run(1);
  const two = run(2);
  assert.equal(one.threads, 1);
  assert.match(one.reason, /threads: 1 was asked for/);
  assert.equal(two.threads, 2, `threads: 2 ran ${two.threads} (${two.reason})`);
  assert.equal(two.reason, null);
  assert.equal(two.features, 'simd128+threads');
  assert.equal(one.features, 'simd128');
  assert.deepEqual(two.greedy, one.greedy);
  assert.deepEqual(two.seeded, one.seeded);
  assert.equal(two.digest, one.digest, 'logits differ between 1 and 2 threads');
  assert.equal(two.losses.length, 3);
  two.losses.forEach((l, i) => assert.ok(Math.abs(l - one.losses[i]) <= 1e-5 * Math.abs(one.losses[i]), `step ${i + 1} loss ${l} vs ${one.losses[i]}`));
  for (const r of [one, two]) {
    assert.equal(r.abortedAfter, 2, `aborted after ${r.abortedAfter} steps`);
  }
  assert.ok(two.after.trim().length > 0);
  assert.equal(two.after, one.after, 'generation after the aborted run');
});
