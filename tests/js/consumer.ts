// A consumer of the package's types, checked with `tsc --strict` (never run).
import { DiffusionLM, OptionsError, UnmaskError, type DenoiseStep, type Progress, type TrainStep } from 'unmask';

export async function demo(url: string): Promise<string> {
  const lm = await DiffusionLM.load(url, {
    device: 'auto',
    onProgress: (p: Progress) => console.log(p.phase, p.loaded / p.total),
  });
  const device: 'wasm' | 'webgpu' = lm.device;
  const why: string | null = lm.fallbackReason;
  console.log(device, why, lm.info.parameters, lm.info.maxSequenceLen);
  const ctl = new AbortController();
  const stream = lm.generate('The cat', { length: 16, steps: 8, strategy: 'confidence', topK: 50, topP: 0.9, seed: 1, signal: ctl.signal });
  const start = await stream.canvas;
  let last: DenoiseStep | undefined;
  for await (const s of stream) {
    const revealed: Int32Array = s.revealed;
    console.log(s.step, s.total, s.pieces.join(''), revealed.length, s.confidence[0], s.candidates[0]?.[0]?.piece);
    last = s;
  }
  for await (const s of lm.infill('The [MASK:2] sat on the [MASK].', { steps: 3 })) console.log(s.done);
  if (last) for await (const s of lm.edit(last, [start.masked], { steps: 1 })) console.log(s.ids);
  const run = lm.train('Some corpus text.\n\nAnother document.', { mode: 'scratch', steps: 10, vocab: 512, evalEvery: 5 });
  const info = await run.start;
  for await (const r of run) {
    const t: TrainStep = r;
    console.log(info.documents, t.loss, t.tokensPerSec, t.eval?.elboPerplexity);
  }
  const bytes: Uint8Array = await lm.export('q8_0');
  console.log(bytes.byteLength);
  try {
    lm.generate('x', { topP: 2 });
  } catch (e) {
    if (e instanceof OptionsError || e instanceof UnmaskError) console.log(e.message);
  }
  const text = await lm.generateText('Once', { length: 8 });
  await lm.dispose();
  await DiffusionLM.cache.clear();
  return text;
}
