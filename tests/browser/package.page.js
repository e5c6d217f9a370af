// Runs the npm package's API in the page (Worker mode, the browser default) and publishes
// what it saw on window.results for the test to check.
import { DiffusionLM, AbortError, FetchError, ModelError, OptionsError, DeviceError } from '../../pkg/src/index.js';

const MODEL = '/target/models/fixture.gguf';
const out = { errors: {} };

async function collect(stream) {
  const steps = [];
  for await (const s of stream) steps.push(s);
  return steps;
}

async function expectError(key, fn, Cls) {
  try {
    await fn();
    out.errors[key] = 'no error';
  } catch (e) {
    out.errors[key] = e instanceof Cls ? e.name : `wrong: ${e?.name}: ${e?.message}`;
  }
}

/** Max |Δlogit| of this build (in Chromium: relaxed SIMD) against transformers' fixture logits. */
async function logitsAgainstTransformers() {
  const buf = await (await fetch('/tests/fixtures/roberta-prelayernorm/expected.safetensors')).arrayBuffer();
  const n = Number(new DataView(buf).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n)));
  const view = (name, Ctor) => new Ctor(buf.slice(8 + n + header[name].data_offsets[0], 8 + n + header[name].data_offsets[1]));
  const [batch, seq] = header.input_ids.shape;
  const ids = view('input_ids', BigInt64Array);
  const want = view('logits', Float32Array);
  const m = await DiffusionLM.load('/target/models/fixture-f32.gguf', { cache: false });
  let worst = 0;
  for (let b = 0; b < batch; b++) {
    const got = await m.logits(Array.from(ids.subarray(b * seq, (b + 1) * seq), Number));
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[b * got.length + i]));
  }
  await m.dispose();
  // The q8_0 file goes through the integer kernel in this build (7-bit weights, 8-bit
  // activations): relative RMS error of its logits against transformers' f32 ones.
  const q = await DiffusionLM.load('/target/models/fixture.gguf', { cache: false });
  let err = 0, norm = 0;
  for (let b = 0; b < batch; b++) {
    const got = await q.logits(Array.from(ids.subarray(b * seq, (b + 1) * seq), Number));
    for (let i = 0; i < got.length; i++) {
      const w = want[b * got.length + i];
      err += (got[i] - w) ** 2;
      norm += w * w;
    }
  }
  await q.dispose();
  out.q8RelRms = Math.sqrt(err / norm);
  return worst;
}

try {
  await DiffusionLM.cache.clear();
  const progress = [];
  // One thread: the relaxed build, the same arithmetic as the inline instance below (threads: tests/browser/threads).
  const lm = await DiffusionLM.load(MODEL, { threads: 1, onProgress: (p) => progress.push(p) });
  out.progress = progress;
  out.device = lm.device;
  out.fallbackReason = lm.fallbackReason;
  out.info = lm.info;
  const stream = lm.generate('The cat', { length: 16, steps: 8, seed: 5 });
  const start = await stream.canvas;
  const steps = await collect(stream);
  out.start = { masked: start.masked, ids: Array.from(start.ids), fixed: start.fixed };
  out.steps = steps.map((s) => ({ step: s.step, masked: s.masked, revealed: s.revealed.length, ids: Array.from(s.ids), ms: s.ms }));
  out.text = await lm.render(steps.at(-1).ids);
  // Same seed through the inline (no Worker) path gives the same tokens.
  const inline = await DiffusionLM.load(MODEL, { worker: false });
  const inlineSteps = await collect(inline.generate('The cat', { length: 16, steps: 8, seed: 5 }));
  out.inlineIds = Array.from(inlineSteps.at(-1).ids);
  await inline.dispose();
  // Reload: served from the Cache API, with progress.
  const cached = [];
  const again = await DiffusionLM.load(MODEL, { onProgress: (p) => cached.push(p.phase) });
  out.cachedPhases = cached;
  await again.dispose();
  // Abort mid-way, then keep using the instance.
  const ctl = new AbortController();
  const seen = [];
  await expectError('abort', async () => {
    for await (const s of lm.generate('The cat', { length: 20, steps: 10, signal: ctl.signal })) {
      seen.push(s.step);
      if (s.step === 2) ctl.abort();
    }
  }, AbortError);
  out.abortedAfter = seen;
  out.afterAbort = (await collect(lm.infill('The [MASK:2] sat.', { steps: 2 }))).length;
  await expectError('404', () => DiffusionLM.load('/no/such/model.gguf'), FetchError);
  await expectError('notGguf', () => DiffusionLM.load(new Uint8Array(64)), ModelError);
  await expectError('options', () => collect(lm.generate('x', { topP: 7 })), OptionsError);
  await expectError('webgpu', () => DiffusionLM.load(MODEL, { device: 'webgpu' }), DeviceError);
  out.wasmFeatures = lm.wasmFeatures;
  await lm.dispose();
  out.maxLogitDiff = await logitsAgainstTransformers();
  out.done = true;
} catch (e) {
  out.fatal = `${e?.name}: ${e?.message}`;
}
window.results = out;
document.getElementById('status').textContent = out.done ? 'done' : 'failed';
