// The npm package in Node 20: load, stream steps, infill, edit, abort, concurrency, and typed
// errors for bad input. Needs pkg/dist (scripts/build-wasm) and target/models/fixture.gguf.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import {
  DiffusionLM, AbortError, DeviceError, DisposedError, FetchError, InputError, ModelError,
  OptionsError, TrainingError, UnmaskError,
} from '../../pkg/src/index.js';

const MODEL = fileURLToPath(new URL('../../target/models/fixture.gguf', import.meta.url));
const bytes = await readFile(MODEL);
const lm = await DiffusionLM.load(MODEL);

async function collect(stream) {
  const steps = [];
  for await (const s of stream) steps.push(s);
  return steps;
}

function checkInvariants(start, steps, n) {
  assert.equal(steps.length, n);
  let prevMasked = start.masked;
  let prev = start.ids;
  for (const s of steps) {
    assert.equal(s.ids.length, start.ids.length);
    assert.equal(s.pieces.length, start.ids.length);
    assert.ok(s.masked < prevMasked, 'masks decrease every step');
    assert.equal(prevMasked - s.masked, s.revealed.length);
    assert.equal(s.confidence.length, s.revealed.length);
    for (let i = 0; i < s.ids.length; i++) {
      if (start.fixed[i]) assert.equal(s.ids[i], start.ids[i], 'fixed positions never change');
      if (prev[i] !== start.ids[i] || start.fixed[i]) assert.equal(s.ids[i], prev[i], 'revealed tokens stay');
    }
    assert.ok(s.ms >= 0);
    prevMasked = s.masked;
    prev = s.ids;
  }
  assert.equal(steps.at(-1).masked, 0);
  assert.ok(steps.at(-1).done);
}

test('load reports progress, info and the device', async () => {
  const events = [];
  const m = await DiffusionLM.load(bytes, { onProgress: (p) => events.push(p) });
  assert.deepEqual(events.map((e) => e.phase), ['fetch', 'compile', 'compile', 'ready']);
  assert.equal(events[0].total, bytes.byteLength);
  assert.equal(m.info.modelType, 'roberta-prelayernorm');
  assert.ok(m.info.parameters > 10000);
  assert.equal(m.device, 'wasm');
  assert.match(m.fallbackReason, /gpu/i);
  await m.dispose();
});

test('generate streams every step with the invariants', async () => {
  const stream = lm.generate('The cat', { length: 12, steps: 6, seed: 4, candidates: 3 });
  const start = await stream.canvas;
  assert.equal(start.masked, 12);
  const steps = await collect(stream);
  checkInvariants(start, steps, 6);
  assert.equal(steps[0].candidates.length, steps[0].revealed.length);
  assert.ok(steps[0].candidates[0].length <= 3 && typeof steps[0].candidates[0][0].piece === 'string');
});

test('every strategy and blocks work; the same seed gives the same text', async () => {
  const strategies = lm.options.sampling.find((o) => o.name === 'strategy').kind.choices;
  assert.ok(strategies.length >= 5, strategies.join());
  for (const strategy of strategies) {
    for (const blockLength of [undefined, 4]) {
      const opts = { length: 16, steps: 8, seed: 11, strategy, blockLength };
      const a = await collect(lm.generate('A boat', opts));
      const b = await collect(lm.generate('A boat', opts));
      assert.deepEqual(Array.from(a.at(-1).ids), Array.from(b.at(-1).ids));
      assert.equal(a.at(-1).masked, 0);
    }
  }
  const x = await lm.generateText('A boat', { length: 16, seed: 1 });
  const y = await lm.generateText('A boat', { length: 16, seed: 2 });
  assert.notEqual(x, y);
  assert.ok(x.startsWith('A boat'));
});

test('infill keeps the template text and fills every span', async () => {
  const stream = lm.infill('The [MASK:3] sat on the [MASK].', { steps: 4, seed: 3 });
  const start = await stream.canvas;
  assert.equal(start.masked, 4);
  const steps = await collect(stream);
  checkInvariants(start, steps, 4);
  const text = await lm.render(steps.at(-1).ids);
  assert.match(text, /^The.* sat on the/);
  assert.ok(!text.includes('[MASK]'));
});

test('edit re-masks chosen positions and changes only those', async () => {
  const first = await collect(lm.generate('The cat', { length: 10, steps: 5, seed: 1 }));
  const final = first.at(-1);
  const target = final.fixed.findIndex((f) => !f) + 2;
  const steps = await collect(lm.edit(final, [target], { steps: 1, seed: 99 }));
  assert.equal(steps.length, 1);
  assert.deepEqual(Array.from(steps[0].revealed), [target]);
  for (let i = 0; i < final.ids.length; i++) if (i !== target) assert.equal(steps[0].ids[i], final.ids[i]);
});

test('pins place words among the masks', async () => {
  const stream = lm.generate('The cat', { length: 8, steps: 4, pins: [{ position: 2, text: ' dog' }] });
  const start = await stream.canvas;
  const steps = await collect(stream);
  assert.ok(start.masked < 8);
  assert.match(await lm.render(steps.at(-1).ids), /dog/);
});

test('abort stops between steps and the instance stays usable', async () => {
  const ctl = new AbortController();
  const seen = [];
  await assert.rejects(async () => {
    for await (const s of lm.generate('The cat', { length: 20, steps: 10, signal: ctl.signal })) {
      seen.push(s.step);
      if (s.step === 3) ctl.abort();
    }
  }, AbortError);
  assert.deepEqual(seen, [1, 2, 3]);
  // Breaking out of the loop also ends the run.
  for await (const s of lm.generate('The cat', { length: 20, steps: 10 })) if (s.step === 2) break;
  const after = await collect(lm.generate('The cat', { length: 8, steps: 4 }));
  assert.equal(after.length, 4);
});

test('concurrent generations queue and do not corrupt each other', async () => {
  const opts = (seed) => ({ length: 12, steps: 6, seed });
  const alone1 = (await collect(lm.generate('The cat', opts(1)))).at(-1).ids;
  const alone2 = (await collect(lm.generate('A boat', opts(2)))).at(-1).ids;
  const [c1, c2] = await Promise.all([collect(lm.generate('The cat', opts(1))), collect(lm.generate('A boat', opts(2)))]);
  assert.deepEqual(Array.from(c1.at(-1).ids), Array.from(alone1));
  assert.deepEqual(Array.from(c2.at(-1).ids), Array.from(alone2));
});

test('export gives a GGUF that loads', async () => {
  const out = await lm.export('f16');
  assert.ok(out instanceof Uint8Array && out.byteLength > 1000);
  const m = await DiffusionLM.load(out);
  assert.equal(m.info.hiddenSize, lm.info.hiddenSize);
  await m.dispose();
});

test('bad input gives typed errors', async () => {
  const rejects = (fn, Cls, re) => assert.rejects(fn, (e) => e instanceof Cls && e instanceof UnmaskError && re.test(e.message));
  await rejects(() => DiffusionLM.load(new Uint8Array([1, 2, 3, 4, 5])), ModelError, /not a GGUF/);
  await rejects(() => DiffusionLM.load(bytes.subarray(0, bytes.byteLength >> 1)), ModelError, /truncated/);
  await rejects(() => DiffusionLM.load('/nonexistent/model.gguf'), FetchError, /cannot read/);
  await rejects(() => DiffusionLM.load(bytes, { device: 'webgpu' }), DeviceError, /WebGPU/);
  await rejects(() => DiffusionLM.load(bytes, { device: 'tpu' }), OptionsError, /device/);
  await rejects(() => DiffusionLM.load(42), OptionsError, /source/);
  assert.throws(() => lm.generate('x', { topP: 2 }), OptionsError);
  assert.throws(() => lm.generate('x', { steps: 'ten' }), OptionsError);
  assert.throws(() => lm.generate('x', { temperature: 0 }), OptionsError);
  assert.throws(() => lm.generate('x', { strategy: 'best' }), OptionsError);
  assert.throws(() => lm.generate('x', { colour: 'red' }), OptionsError);
  assert.throws(() => lm.generate(42), OptionsError);
  await rejects(() => collect(lm.generate('', {})), InputError, /empty/);
  await rejects(() => collect(lm.generate('word '.repeat(100), {})), InputError, /context/);
  assert.throws(() => lm.generate('x', { steps: 0 }), /steps \(--steps\) must be an integer in \[1, 4096\], got 0/);
  await rejects(() => collect(lm.infill('no spans')), InputError, /MASK/);
  await rejects(() => collect(lm.edit({ ids: [0, 1, 2], fixed: [true, true, true] }, [1])), InputError, /re-masked/);
  await rejects(() => collect(lm.edit({ ids: [0, 99999, 2], fixed: [true, false, true] }, [])), UnmaskError, /./);
  // Still usable after all of that.
  assert.equal((await collect(lm.generate('The cat', { length: 6, steps: 3 }))).length, 3);
  const m = await DiffusionLM.load(bytes);
  await m.dispose();
  await rejects(() => collect(m.generate('The cat')), DisposedError, /disposed/);
  await rejects(() => m.export(), DisposedError, /disposed/);
});

test('train streams steps; the trained model then generates; bad corpora are typed errors', async () => {
  const corpus = await readFile(new URL('../../www/sample-corpus.txt', import.meta.url), 'utf8');
  const m = await DiffusionLM.load(bytes);
  const run = m.train(corpus, { mode: 'scratch', steps: 30, vocab: 512, seqLen: 32, batchSize: 8, lr: 3e-3, evalEvery: 15, sampleEvery: 10, sampleLength: 6 });
  const info = await run.start;
  assert.equal(info.documents, 6);
  assert.ok(info.heldOut && info.trainTokens > info.validTokens);
  // Samples continue the start of a document the run trains on (one is held out).
  const docs = corpus.split('\n\n').map((d) => d.split(/\s+/).filter(Boolean).join(' '));
  assert.equal(info.samplePrompt.split(' ').length, 3);
  assert.equal(docs.filter((d) => d.startsWith(info.samplePrompt)).length, 1, info.samplePrompt);
  const steps = [];
  for await (const r of run) steps.push(r);
  assert.deepEqual(steps.map((r) => r.step), Array.from({ length: 30 }, (_, i) => i + 1));
  assert.deepEqual(steps.filter((r) => r.eval).map((r) => r.step), [15, 30]);
  assert.deepEqual(steps.filter((r) => r.sample !== undefined).map((r) => r.step), [10, 20, 30]);
  await assert.rejects(() => run.sample(), TrainingError, /ended/);
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  assert.ok(mean(steps.slice(-5).map((r) => r.loss)) < mean(steps.slice(0, 5).map((r) => r.loss)));
  assert.ok(steps.every((r) => r.tokensPerSec > 0 && Number.isFinite(r.loss)));
  assert.equal(m.info.vocabSize, 512, 'the trained model was adopted');
  assert.ok((await m.generateText('Call me', { length: 8, steps: 4 })).startsWith('Call me'));
  // Aborting keeps what was trained and the instance usable.
  const ctl = new AbortController();
  await assert.rejects(async () => {
    for await (const r of m.train(corpus, { mode: 'finetune', steps: 50, seqLen: 32, batchSize: 4, signal: ctl.signal })) {
      if (r.step === 3) ctl.abort();
    }
  }, AbortError);
  assert.equal((await collect(m.generate('Call me', { length: 6, steps: 3 }))).length, 3);
  await assert.rejects(() => collect(m.train('', { mode: 'scratch' })), TrainingError);
  await assert.rejects(() => collect(m.train('too short', { mode: 'finetune', seqLen: 64 })), TrainingError);
  assert.throws(() => m.train(corpus, { mode: 'magic' }), OptionsError);
  assert.throws(() => m.train(corpus, { lr: -1 }), OptionsError);
  await m.dispose();
});

test('a LoRA fine-tune saves adapters that load onto the same base, and a time budget ends a run', async () => {
  const corpus = await readFile(new URL('../../www/sample-corpus.txt', import.meta.url), 'utf8');
  const tuned = await DiffusionLM.load(bytes);
  const run = tuned.train(corpus, { mode: 'finetune', steps: 4, seqLen: 32, batchSize: 4, lr: 2e-2, warmup: 1, rank: 4, sampleLength: 8, keep: 'last' });
  const info = await run.start;
  assert.equal(info.steps, 4);
  // Before the first step a sample is the loaded model's, drawn with the defaults and seed 0.
  assert.equal(await run.sample(), await lm.generateText(info.samplePrompt, { length: 8, seed: 0 }));
  assert.ok(info.parameters < 0.2 * lm.info.parameters, `${info.parameters} trained parameters: adapters only`);
  for await (const _ of run) { /* train */ }
  const adapters = await tuned.exportAdapters();
  assert.ok(adapters.byteLength < 0.5 * bytes.byteLength, `${adapters.byteLength} bytes of adapters`);
  const fresh = await DiffusionLM.load(bytes);
  await fresh.loadAdapters(adapters);
  const after = await fresh.generateText('Call me', { length: 8, steps: 4, seed: 3 });
  assert.equal(after, await tuned.generateText('Call me', { length: 8, steps: 4, seed: 3 }), 'base + adapters = the fine-tuned model');
  assert.deepEqual(await fresh.logits([0, 5, 6, 7, 2], [2]), await tuned.logits([0, 5, 6, 7, 2], [2]));
  assert.notDeepEqual(await fresh.logits([0, 5, 6, 7, 2], [2]), await lm.logits([0, 5, 6, 7, 2], [2]));
  // A time budget alone: many steps scheduled, the run ends on time, the learning rate
  // decaying over the time (after a one-step warm-up: falling from its peak).
  // Samples during it come from the trained weights, yet `adopt: false` keeps the model.
  const kept = await fresh.logits([0, 5, 6, 7, 2], [2]);
  const budget = fresh.train(corpus, { mode: 'finetune', seconds: 1, warmup: 1, seqLen: 32, batchSize: 2, adopt: false, sampleEvery: 1, sampleLength: 4 });
  assert.ok((await budget.start).steps > 1000);
  const t0 = performance.now();
  const lrs = [];
  for await (const r of budget) lrs.push(r.lr);
  assert.ok(lrs.length >= 2 && performance.now() - t0 < 6000, `${lrs.length} steps in ${performance.now() - t0} ms`);
  const peak = lm.options.defaultLr.lora;
  assert.ok(lrs[0] === peak && lrs.at(-1) < peak && lrs.every((x, i) => i === 0 || x <= lrs[i - 1]), `learning rates ${lrs}`);
  assert.deepEqual(await fresh.logits([0, 5, 6, 7, 2], [2]), kept, 'adopt: false keeps the loaded model');
  await tuned.dispose();
  await fresh.dispose();
});

test('a fine-tune ends on its best evaluated weights (the loaded model\'s among them), a new model on its last', async () => {
  const corpus = await readFile(new URL('../../www/sample-corpus.txt', import.meta.url), 'utf8');
  const probe = [0, 5, 6, 7, 2];
  // A model that knows one text well, then fine-tuned on another text with no word in common
  // and evaluated on the first: training only makes the held-out text read worse, so the run
  // hands back the loaded model's weights.
  const [sea, sir] = ['the sea was calm and the ship sailed on. ', 'my dear sir, pray give me your hand. '].map((t) => t.repeat(12));
  const m = await DiffusionLM.load(bytes);
  for await (const _ of m.train(sir, { mode: 'finetune', steps: 30, seqLen: 32, batchSize: 4, lr: 0.02, validFraction: 0, keep: 'last' }));
  const base = await m.logits(probe, [2]);
  const run = m.train(`${sea}\n\n${sir}`, { mode: 'finetune', steps: 4, seqLen: 32, batchSize: 4, lr: 0.05, warmup: 1, evalEvery: 2, validFraction: 0.5 });
  const info = await run.start;
  assert.ok(info.samplePrompt.startsWith('the sea'), 'this seed trains on the sea and holds out the sir');
  const evals = [[0, info.eval.elboPerplexity]];
  for await (const r of run) {
    if (r.step === 1) evals.push([1, (await run.evaluate()).elboPerplexity]);
    if (r.eval) evals.push([r.step, r.eval.elboPerplexity]);
  }
  assert.deepEqual(evals.map(([s]) => s), [0, 1, 2, 4]);
  const best = evals.reduce((a, b) => (b[1] < a[1] ? b : a));
  assert.deepEqual(run.kept, { step: best[0], elboPerplexity: best[1] }, JSON.stringify(evals));
  assert.equal(run.kept.step, 0, `learning one document only made the other read worse: ${JSON.stringify(evals)}`);
  assert.deepEqual(await m.logits(probe, [2]), base, 'the loaded model\'s weights are back');
  await assert.rejects(() => run.evaluate(), TrainingError, /ended/);
  // Under keep: 'last', Stop keeps the weights it stopped on.
  const last = m.train(corpus, { mode: 'finetune', steps: 50, seqLen: 32, batchSize: 4, lr: 0.3, warmup: 1, keep: 'last' });
  assert.equal((await last.start).eval, null);
  for await (const r of last) if (r.step === 2) break;
  assert.deepEqual(last.kept, { step: 2, elboPerplexity: null });
  assert.notDeepEqual(await m.logits(probe, [2]), base);
  await m.dispose();
});

test('a run by steps is evaluated every evalEvery-th step, the core\'s default when not given, and keeps the best of them', async () => {
  const corpus = await readFile(new URL('../../www/sample-corpus.txt', import.meta.url), 'utf8');
  const m = await DiffusionLM.load(bytes);
  const every = m.options.training.find((s) => s.name === 'evalEvery').default;
  assert.equal(every, 100);
  const run = m.train(corpus, { mode: 'finetune', steps: 2 * every, seqLen: 16, batchSize: 2, lr: 0.05, warmup: 1 });
  const evals = [[0, (await run.start).eval.elboPerplexity]];
  for await (const r of run) if (r.eval) evals.push([r.step, r.eval.elboPerplexity]);
  assert.deepEqual(evals.map(([s]) => s), [0, every, 2 * every]);
  const best = evals.reduce((a, b) => (b[1] < a[1] ? b : a));
  assert.deepEqual(run.kept, { step: best[0], elboPerplexity: best[1] }, JSON.stringify(evals));
  await m.dispose();
});

test('wasm logits match transformers on the fixture (f32 file, our SIMD128 GEMM)', async () => {
  // expected.safetensors (tests/fixtures/make_fixtures.py): input_ids i64 [B, T], logits f32 [B, T, V].
  const buf = await readFile(fileURLToPath(new URL('../fixtures/roberta-prelayernorm/expected.safetensors', import.meta.url)));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const body = buf.subarray(8 + n);
  const view = (name, Ctor) => {
    const [a, b] = header[name].data_offsets;
    return new Ctor(body.buffer.slice(body.byteOffset + a, body.byteOffset + b));
  };
  const [batch, seq] = header.input_ids.shape;
  const vocab = header.logits.shape[2];
  const ids = view('input_ids', BigInt64Array);
  const want = view('logits', Float32Array);
  const f32 = await DiffusionLM.load(fileURLToPath(new URL('../../target/models/fixture-f32.gguf', import.meta.url)));
  let worst = 0;
  for (let b = 0; b < batch; b++) {
    const row = Array.from(ids.subarray(b * seq, (b + 1) * seq), Number);
    const got = await f32.logits(row);
    assert.equal(got.length, seq * vocab);
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[b * seq * vocab + i]));
  }
  console.log(`wasm vs transformers: max |Δlogit| = ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-4, `max |Δlogit| ${worst}`);
  await assert.rejects(f32.logits([]), InputError);
  await assert.rejects(f32.logits([1, 2], [5]), InputError);
  await assert.rejects(f32.logits([-1]), OptionsError);
  await f32.dispose();
});

test('a q8_0 file runs through an integer kernel (16-bit dot in the SIMD128 build), close to f32 on the same values', async () => {
  // Reference: the q8_0 file's own values stored as f32 (scripts/test makes it), so the only
  // difference left is the integer kernel's: activations quantized to 8 bits per group of 128,
  // weights requantized per group. Zero difference would mean the kernel is not in use.
  const path = (f) => fileURLToPath(new URL(`../../target/models/${f}`, import.meta.url));
  const ref = await DiffusionLM.load(path('fixture-q8-values.gguf'));
  const q8 = await DiffusionLM.load(path('fixture.gguf'));
  let err = 0, norm = 0;
  for (const len of [1, 7, 33]) {
    const ids = Array.from({ length: len }, (_, i) => 5 + ((i * 37) % 200));
    const [a, b] = [await ref.logits(ids), await q8.logits(ids)];
    for (let i = 0; i < a.length; i++) { err += (a[i] - b[i]) ** 2; norm += a[i] ** 2; }
  }
  const rel = Math.sqrt(err / norm);
  console.log(`${q8.wasmFeatures} build, q8_0 fixture through the integer kernel vs its f32 values: relative RMS ${rel.toExponential(2)}`);
  assert.ok(rel > 1e-4 && rel <= 6e-2, `relative RMS ${rel}`);
  await ref.dispose();
  await q8.dispose();
});
