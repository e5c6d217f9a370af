// A Rust panic inside the engine surfaces as a typed InternalError, and the instance (with every
// other inline instance sharing its wasm memory) refuses further calls instead of computing on
// broken memory. Its own file: node:test runs each file in a fresh process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { DiffusionLM, InternalError } from '../../pkg/src/index.js';

const MODEL = fileURLToPath(new URL('../../target/models/fixture.gguf', import.meta.url));

test('a panic becomes an InternalError and the instance is marked unusable', async () => {
  const lm = await DiffusionLM.load(MODEL);
  const other = await DiffusionLM.load(MODEL);
  assert.ok((await lm.generateText('The cat', { length: 4, steps: 2 })).startsWith('The cat'));
  await assert.rejects(lm._t.call('faultForTesting', []), (e) => e instanceof InternalError && /deliberate fault|unreachable/.test(e.message));
  await assert.rejects(lm.generateText('The cat', { length: 4, steps: 2 }), (e) => e instanceof InternalError && /no longer usable/.test(e.message));
  await assert.rejects(other.generateText('The cat', { length: 4, steps: 2 }), InternalError);
});
