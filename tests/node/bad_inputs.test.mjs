// The bad-input catalogue (tests/bad_inputs/catalogue.json, shared with the Rust test) against
// the JS API in Node: each case rejects with the typed Error its `error` names and a message
// naming the problem, and the instance keeps generating afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { DiffusionLM, UnmaskError } from '../../pkg/src/index.js';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const { cases } = JSON.parse(await readFile(here('../bad_inputs/catalogue.json'), 'utf8'));
const gguf = new Uint8Array(await readFile(here('../../target/models/fixture.gguf')));
const hfDir = here('../fixtures/roberta-prelayernorm/');

const latin1 = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** The GGUF changes of the catalogue (mirrors patch_gguf in tests/bad_inputs/main.rs). */
async function patchGguf(op) {
  let b = gguf.slice();
  switch (op.op) {
    case 'empty': return new Uint8Array(0);
    case 'truncate': return b.slice(0, op.keep);
    case 'truncateFraction': return b.slice(0, op.keep < 0 ? b.length - 1 : Math.floor(b.length * op.keep));
    case 'patch': b.set(latin1(op.bytes), op.at); return b;
    case 'text': return new TextEncoder().encode(op.text);
    case 'hfFile': return new Uint8Array(await readFile(hfDir + op.file));
    case 'tensorDim': {
      const name = new TextEncoder().encode(op.tensor);
      const needle = new Uint8Array(8 + name.length);
      new DataView(needle.buffer).setBigUint64(0, BigInt(name.length), true);
      needle.set(name, 8);
      const at = Buffer.from(b).indexOf(Buffer.from(needle));
      assert.ok(at > 0, 'tensor in header');
      new DataView(b.buffer).setBigUint64(at + needle.length + 4, BigInt(op.value), true);
      return b;
    }
    default: throw new Error(`unknown op ${op.op}`);
  }
}

async function drain(stream) {
  for await (const _ of stream) { /* consume */ }
}

/** The case's input through the public API; resolves when it was (wrongly) accepted. */
async function run(lm, c) {
  if (c.gguf) return (await DiffusionLM.load(await patchGguf(c.gguf))).dispose();
  if (c.load) return (await DiffusionLM.load(gguf, c.load)).dispose();
  if (c.request) {
    const { prompt, template, canvas, length, pins, remask, options = {}, ...rest } = c.request;
    assert.deepEqual(rest, {}, `case ${c.name} has fields the JS mapping does not know`);
    if (prompt !== undefined) return drain(lm.generate(prompt, { ...options, length, pins }));
    if (template !== undefined) return drain(lm.infill(template, { ...options, pins }));
    return drain(lm.edit(canvas, remask ?? [], options));
  }
  if (c.adapters) {
    switch (c.adapters.op) {
      case 'noTraining': return lm.exportAdapters();
      case 'modelFile': return lm.loadAdapters(gguf);
      case 'wrongBase': {
        const other = await DiffusionLM.load(new Uint8Array(await readFile(here('../../target/models/fixture-f32.gguf'))));
        try {
          await drain(other.train(await readFile(here('../../www/sample-corpus.txt'), 'utf8'), { mode: 'finetune', steps: 1, seqLen: 16, batchSize: 2 }));
          return await lm.loadAdapters(await other.exportAdapters());
        } finally {
          await other.dispose();
        }
      }
      default: throw new Error(`unknown op ${c.adapters.op}`);
    }
  }
  const { mode, size, options = {} } = c.train.request;
  return drain(lm.train(c.train.corpus, { mode, size, ...options, steps: 1, adopt: false }));
}

test('every bad input in the catalogue gives its typed error and leaves the instance usable', async () => {
  const lm = await DiffusionLM.load(gguf);
  const failures = [];
  let n = 0;
  for (const c of cases) {
    if (c.hf || (c.only && !c.only.includes('js'))) continue;
    n++;
    try {
      await run(lm, c);
      failures.push(`${c.name}: accepted`);
    } catch (e) {
      const msg = String(e?.message).toLowerCase();
      if (!(e instanceof UnmaskError) || e.name !== c.error) failures.push(`${c.name}: ${e?.name} ${e?.message}, want ${c.error}`);
      else if (!c.message.some((m) => msg.includes(m.toLowerCase()))) failures.push(`${c.name}: message "${e.message}" names none of ${c.message}`);
    }
    const text = await lm.generateText('The cat', { length: 4, steps: 2 });
    assert.ok(text.startsWith('The cat'), `instance unusable after ${c.name}`);
  }
  console.log(`${n} bad inputs rejected cleanly through the JS API`);
  assert.deepEqual(failures, []);
  assert.ok(n >= 55, `catalogue shrank to ${n} JS cases`);
  await lm.dispose();
});
