// What the demo's training does in its one-minute budget (`trainStart`), in Chromium, per
// mode and thread count: steps, the mean loss of the last 10 steps, the held-out ELBO
// perplexity of the weights the run ends with (`keep`: a fine-tune evaluates on the demo's
// clock, `EVAL_SECONDS` in www/clock.js, and keeps its best) and the samples (the first
// training document's first words, seed 0; a fine-tune's "before" is the loaded model's). A
// fresh instance per run, as the demo after a reload.
//   node bench/minute.mjs    (env: MODEL=models/default.gguf MODES=scratch,finetune THREADS=1,2 SECONDS=60)
import { start } from '../tests/browser/harness.mjs';

const model = process.env.MODEL || 'models/default.gguf';
const modes = (process.env.MODES || 'scratch,finetune').split(',');
const threads = (process.env.THREADS || '1,2').split(',').map(Number);
const seconds = Number(process.env.SECONDS || 0) || null;

const h = await start({ isolate: true });
h.page.setDefaultTimeout(0);
await h.page.goto(`${h.origin}/bench/threads.html`);
const rows = await h.page.evaluate(async ({ model, modes, threads, seconds }) => {
  const { DiffusionLM } = await import('/pkg/src/index.js');
  const { EVAL_SECONDS } = await import('/www/clock.js');
  const corpus = await (await fetch('/www/sample-corpus.txt')).text();
  const out = [];
  for (const mode of modes) {
    for (const t of threads) {
      const lm = await DiffusionLM.load(`/${model}`, { cache: false, device: 'wasm', threads: t });
      const budget = seconds ?? lm.options.trainStart.seconds;
      const given = Object.fromEntries(Object.entries(lm.options.trainStart).filter(([, v]) => v !== null));
      const run = lm.train(corpus, { mode, ...given, seconds: budget, evalEvery: 1_000_000, sampleEvery: 1_000_000, sampleLength: 24 });
      const info = await run.start;
      const before = mode === 'finetune' ? await run.sample() : null;
      const losses = [];
      let last;
      let evaluated = performance.now();
      const evals = [];
      for await (const r of run) {
        losses.push(r.loss);
        last = r;
        if (mode === 'finetune' && performance.now() - evaluated >= EVAL_SECONDS * 1000) {
          evals.push(`${r.step}: ${(await run.evaluate()).elboPerplexity.toFixed(1)}`);
          evaluated = performance.now();
        }
      }
      const tail = losses.slice(-10);
      const kept = run.kept.step === last.step ? null : run.kept;
      out.push({
        mode, threads: lm.threads, budget, steps: last.step, loss: tail.reduce((a, b) => a + b, 0) / tail.length,
        elbo: kept?.elboPerplexity ?? last.eval.elboPerplexity, heldOut: last.eval.heldOut, prompt: info.samplePrompt, before,
        base: info.eval?.elboPerplexity, evals, keptStep: kept?.step ?? last.step,
        after: kept ? await lm.generateText(info.samplePrompt, { length: 24, seed: 0 }) : last.sample,
      });
      await lm.dispose();
    }
  }
  return out;
}, { model, modes, threads, seconds });
await h.close();

console.log(`# ${model} in Chromium: the demo's training budget on the sample corpus\n`);
console.log('| mode | threads | seconds | steps | loss (last 10) | weights kept | their ELBO perplexity | loaded model\'s |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.mode} | ${r.threads} | ${r.budget} | ${r.steps} | ${r.loss.toFixed(3)} | step ${r.keptStep} | ${r.elbo.toFixed(1)} (${r.heldOut ? 'held-out' : 'training text'}) | ${r.base?.toFixed(1) ?? '–'} |`);
}
for (const r of rows) {
  console.log(`\n${r.mode}, ${r.threads} thread(s), prompt "${r.prompt}"${r.evals.length ? `; evaluated at steps ${r.evals.join(', ')}` : ''}:`);
  if (r.before !== null) console.log(`  before: ${r.before}`);
  console.log(`  after:  ${r.after}`);
}
