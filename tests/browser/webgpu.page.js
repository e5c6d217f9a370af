// The WebGPU path in the browser: `device: 'webgpu'` runs it, and a greedy generation gives the
// same tokens as the wasm CPU path; `device: 'auto'` times a step on each and keeps the faster.
// Results on window.results.
import { DiffusionLM } from '../../pkg/src/index.js';

// The q8_0 file: its matrices stay int8 on the GPU, dequantized while loading tiles. The CPU
// reference is the same values stored as f32 (the q8_0 file itself would go through the relaxed
// build's integer kernel, which also quantizes activations: another computation).
const MODEL = '/target/models/fixture.gguf';
const CPU_MODEL = '/target/models/fixture-q8-values.gguf';
const out = {};

async function tokens(lm, extra = {}) {
  let last;
  // No prior penalty: with it the GPU hands over whole rows instead of ranking them.
  for await (const s of lm.generate('The cat', { length: 24, steps: 6, seed: 3, topK: 1, priorPenalty: 0, ...extra })) last = s;
  return Array.from(last.ids);
}

try {
  const phases = [];
  const gpu = await DiffusionLM.load(MODEL, { cache: false, device: 'webgpu', onProgress: (p) => phases.push(p.phase) });
  out.device = gpu.device;
  out.fallbackReason = gpu.fallbackReason;
  out.gpuTimings = gpu.deviceTimings;
  out.phases = phases;
  const auto = await DiffusionLM.load(MODEL, { cache: false });
  out.auto = { device: auto.device, fallbackReason: auto.fallbackReason, timings: auto.deviceTimings };
  // Whichever it kept, it generates (a GPU it let go of is not used any more).
  let autoLast;
  for await (const s of auto.generate('The cat', { length: 8, steps: 4, seed: 1 })) autoLast = s;
  out.auto.masked = autoLast.masked;
  await auto.dispose();
  const cpu = await DiffusionLM.load(CPU_MODEL, { cache: false, device: 'wasm' });
  out.cpuDevice = cpu.device;
  out.gpuIds = await tokens(gpu);
  out.cpuIds = await tokens(cpu);
  // The repetition penalty runs on the GPU before its top-k (a penalize kernel): same tokens.
  out.gpuPenalized = await tokens(gpu, { repetitionPenalty: 1.5, strategy: 'confidence' });
  out.cpuPenalized = await tokens(cpu, { repetitionPenalty: 1.5, strategy: 'confidence' });
  out.gpuPlainConfidence = await tokens(gpu, { strategy: 'confidence' });
  // Infill and edit go through the same step path.
  let last;
  for await (const s of gpu.infill('The [MASK:3] sat on the [MASK].', { steps: 4, strategy: 'confidence', topK: 1 })) last = s;
  out.infillMasked = last.masked;
  // topK 0 samples from whole rows: the GPU hands back every logit instead of its ranking.
  last = undefined;
  for await (const s of gpu.generate('The cat', { length: 12, steps: 4, seed: 1, topK: 0, candidates: 2 })) last = s;
  out.wholeRows = { masked: last.masked, ids: last.ids.length, candidates: last.candidates.every((c) => c.length === 2) };
  const t0 = performance.now();
  await tokens(gpu);
  out.gpuMs = performance.now() - t0;
  const t1 = performance.now();
  await tokens(cpu);
  out.cpuMs = performance.now() - t1;
  await gpu.dispose();
  await cpu.dispose();
  out.done = true;
} catch (e) {
  out.fatal = `${e?.name}: ${e?.message}`;
}
window.results = out;
document.getElementById('status').textContent = out.done ? 'done' : 'failed';
