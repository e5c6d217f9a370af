// Training in wasm against the native CLI: the same run (a tiny model from scratch on the sample
// corpus, same options and seed) trained by the package on two threads and by
// `unmask train` ends on the same losses and held-out figure. The two share the trainer but not
// the products: natively the linears and their gradients go through candle's matmul; in wasm
// through our SIMD GEMM, its transposes and the pool. A wrong lane in a wasm-only kernel changes
// the gradients, which one step turns into different weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DiffusionLM } from '../../pkg/src/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const corpusPath = join(root, 'www/sample-corpus.txt');
const STEPS = 4;

test('a tiny model trained from scratch in wasm (2 threads) ends where the native CLI does', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'unmask-native-'));
  try {
    const out = execFileSync(join(root, 'target/debug/unmask'), [
      'train', '--from-scratch', 'tiny', '--corpus', corpusPath, '--steps', String(STEPS), '--keep', 'last', '--out', join(dir, 'm'),
    ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const m = out.match(/loss ([0-9.]+) \(mean of the last (\d+) steps\), held-out ELBO perplexity ([0-9.]+)/);
    assert.ok(m, `unexpected CLI output: ${out}`);
    const [nativeLoss, n, nativePpl] = [Number(m[1]), Number(m[2]), Number(m[3])];
    assert.equal(n, STEPS);

    const lm = await DiffusionLM.load(readFileSync(join(root, 'models/default.gguf')), { threads: 2 });
    assert.equal(lm.threads, 2, lm.threadsReason);
    const losses = [];
    let evaluation;
    for await (const r of lm.train(readFileSync(corpusPath, 'utf8'), { mode: 'scratch', size: 'tiny', steps: STEPS, keep: 'last', evalEvery: STEPS, adopt: false })) {
      losses.push(r.loss);
      if (r.eval) evaluation = r.eval;
    }
    await lm.dispose();
    assert.equal(losses.length, STEPS);
    const loss = losses.reduce((a, b) => a + b, 0) / STEPS;
    assert.ok(evaluation, 'the last step was evaluated');
    // Agreement measured: ~1e-6 relative (float rounding of two GEMMs); the CLI prints 4 decimals.
    assert.ok(Math.abs(loss - nativeLoss) <= 2e-4, `mean loss: wasm ${loss}, native ${nativeLoss}`);
    assert.ok(Math.abs(evaluation.elboPerplexity - nativePpl) <= 1e-4 * nativePpl, `held-out ELBO perplexity: wasm ${evaluation.elboPerplexity}, native ${nativePpl}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
