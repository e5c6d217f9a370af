// The options' one definition (the core's specs, `lm.options`) against what the package says
// about them elsewhere: the TypeScript types, and the CLI's defaults.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { DiffusionLM, OptionsError } from '../../pkg/src/index.js';

const root = new URL('../../', import.meta.url);
const MODEL = fileURLToPath(new URL('target/models/fixture.gguf', root));
const lm = await DiffusionLM.load(MODEL);
const dts = await readFile(new URL('pkg/src/index.d.ts', root), 'utf8');

/** `name?: type;` members of an interface in index.d.ts. */
function members(name) {
  const body = new RegExp(`export interface ${name}[^{]*\\{([\\s\\S]*?)\\n\\}`).exec(dts)?.[1];
  assert.ok(body, `index.d.ts has interface ${name}`);
  const out = new Map();
  for (const m of body.matchAll(/^\s*(\w+)\?: ([^;]+);/gm)) out.set(m[1], m[2].trim());
  return out;
}

function expectType(spec, ts) {
  const kind = spec.kind;
  if (kind.type === 'choice') {
    const alias = new RegExp(`export type ${ts} = ([^;]+);`).exec(dts)?.[1] ?? ts;
    const words = alias.split('|').map((w) => w.trim().replace(/^'|'$/g, '')).sort();
    assert.deepEqual(words, [...kind.choices].sort(), `${spec.name}: ${ts}`);
  } else if (kind.type === 'text') {
    assert.match(ts, /`/, `${spec.name} is a template-literal type`);
  } else {
    assert.equal(ts, 'number', spec.name);
  }
}

test('the TypeScript option types are the core\'s options', () => {
  for (const [set, iface, own] of [
    ['sampling', 'SamplingOptions', ['signal', 'mask']],
    ['training', 'TrainOptions', ['mode', 'size', 'sampleEvery', 'samplePrompt', 'sampleLength', 'adopt', 'signal']],
  ]) {
    const ts = members(iface);
    const specs = lm.options[set];
    assert.ok(specs.length >= 10, set);
    for (const s of specs) {
      assert.ok(ts.has(s.name), `${iface} lacks ${s.name}`);
      expectType(s, ts.get(s.name));
    }
    const extra = [...ts.keys()].filter((k) => !specs.some((s) => s.name === k) && !own.includes(k));
    assert.deepEqual(extra, [], `${iface} has options the core does not know`);
  }
});

test('the CLI shows the same defaults as the package', () => {
  const bin = fileURLToPath(new URL('target/debug/unmask', root));
  for (const [cmd, set] of [['generate', 'sampling'], ['train', 'training']]) {
    const help = execFileSync(bin, [cmd, '--help'], { encoding: 'utf8' });
    for (const s of lm.options[set]) {
      const line = help.split('\n').find((l) => l.trim().startsWith(`${s.flag} `));
      assert.ok(line, `unmask ${cmd} --help lacks ${s.flag}`);
      if (s.default !== null) assert.ok(help.includes(`default: ${s.default}]`), `${s.flag}: default ${s.default}`);
    }
  }
});

test('the package checks options with the core\'s messages', async () => {
  assert.throws(() => lm.generate('x', { topP: 0 }), { name: 'OptionsError', message: 'topP (--top-p) must be a number in (0, 1], got 0' });
  assert.throws(() => lm.generate('x', { strategy: 'best' }), /strategy \(--strategy\) must be one of random, confidence, threshold, margin, entropy/);
  assert.throws(() => lm.generate('x', { tempreature: 1 }), /unknown option `tempreature` in sampling options \(valid: steps,/);
  assert.throws(() => lm.train('x', { schedule: 3 }), OptionsError);
  // What the package lets through, the core checks again with the same words.
  const e = await lm.train('a b c d e f. '.repeat(40), { schedule: 'steps:0', steps: 1 }).start.catch((err) => err);
  assert.equal(e.name, 'OptionsError');
  assert.match(e.message, /steps:N needs N ≥ 1/);
  // More steps than masks: one token per step, and the steps' total says so.
  const steps = [];
  for await (const s of lm.generate('hi', { length: 3, steps: 10 })) steps.push(s);
  assert.deepEqual(steps.map((s) => s.total), [3, 3, 3]);
});
