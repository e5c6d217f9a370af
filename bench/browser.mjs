// Unmask vs ONNX Runtime Web (the same number of threads each) in one headless Chromium page,
// plus native Unmask (as many threads) on the same GGUF files. Prints medians and ratios as
// Markdown.
//   python bench/export_onnx.py && (cd bench && npm ci && npm run bench)
// Options (env): MODELS=default,rpln-512x8  LENGTHS=64,128,256  ROUNDS=5  WARM_MS=3000  THREADS=1
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { start, CHROMIUM } from '../tests/browser/harness.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const models = (process.env.MODELS || 'default,rpln-512x8').split(',').filter((m) => existsSync(`${root}bench/models/${m}/model.onnx`));
const lengths = (process.env.LENGTHS || '64,128,256').split(',').map(Number);
const rounds = Number(process.env.ROUNDS || 5);
const warmMs = Number(process.env.WARM_MS || 3000);
const threads = Number(process.env.THREADS || 1);
if (!models.length) throw new Error('no models: run python bench/export_onnx.py first');

const version = (p) => JSON.parse(readFileSync(`${root}${p}`, 'utf8')).version;
// The instruction peaks of this browser (bench/peak), built here: wasm32 + relaxed SIMD.
execFileSync('cargo', ['build', '--release', '--quiet', '--target', 'wasm32-unknown-unknown', '--target-dir', `${root}target/peak`],
  { cwd: `${root}bench/peak`, env: { ...process.env, RUSTFLAGS: '-C target-feature=+simd128,+relaxed-simd' }, stdio: 'inherit' });
const peakWasm = readFileSync(`${root}target/peak/wasm32-unknown-unknown/release/unmask_peak.wasm`).toString('base64');
/** FLOP of one forward with all logits (multiply-add = 2): linears, attention, MLM head. */
function forwardFlop(cfg, t) {
  const { hidden_size: h, intermediate_size: i, num_hidden_layers: L, vocab_size: V } = cfg;
  return 2 * t * L * (4 * h * h + 2 * h * i) + 4 * t * t * h * L + 2 * t * (h * h + h * V);
}
const h = await start();
h.page.setDefaultTimeout(0);
const browser = h.browser.version();
const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1];
console.log(`# Unmask vs ONNX Runtime Web\n\n${cpu}, ${(await import('node:os')).cpus().length} cores; Chromium ${browser}; onnxruntime-web ${version('bench/node_modules/onnxruntime-web/package.json')}; ${threads === 1 ? 'one thread' : `${threads} threads`} each; medians of ${rounds} interleaved rounds after ${warmMs} ms warm-up per engine and length${threads > 1 ? ', each timed call right after an untimed one of the same engine' : ''}.\n`);
let peak;
for (const model of models) {
  await h.page.goto(`${h.origin}/bench/page.html`);
  await h.page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  peak ??= await h.page.evaluate((b64) => window.peak(b64), peakWasm);
  const r = await h.page.evaluate((cfg) => window.bench(cfg), { model, lengths, rounds, warmMs, generate: true, threads });
  if (r.threads.unmask.some((n) => n !== threads)) throw new Error(`unmask ran ${r.threads.unmask} threads, not ${threads}`);
  // Native, as many threads, same files (candle's matmul: the native default).
  const native = {};
  for (const dt of ['f32', 'q8_0']) {
    const o = execFileSync(`${root}target/release/unmask`, ['bench', '-m', `${root}bench/models/${model}/${dt}.gguf`, '--repeats', String(rounds)],
      { env: { ...process.env, RAYON_NUM_THREADS: String(threads) }, encoding: 'utf8' });
    for (const m of o.matchAll(/forward\s+(\d+) tokens \(all logits\)\s+([\d.]+) ms/g)) (native[m[1]] ??= {})[dt] = Number(m[2]);
    const g = o.match(/generate (\d+) tokens, 10 steps\s+([\d.]+) ms/);
    if (g && dt === 'q8_0') native.generate = Number(g[2]);
  }
  console.log(`## ${model}\n\n| tokens | unmask f32 | ORT fp32 | ratio | unmask q8_0 | ORT int8 | ratio | native f32 | wasm ÷ native | max |Δlogit| vs ORT |`);
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const n of lengths) {
    const t = r.lengths[n];
    const nat = native[n]?.f32;
    console.log(`| ${n} | ${t['unmask f32'].toFixed(0)} ms | ${t['ort fp32'].toFixed(0)} ms | ${(t['unmask f32'] / t['ort fp32']).toFixed(2)} | ${t['unmask q8_0'].toFixed(0)} ms | ${t['ort int8'].toFixed(0)} ms | ${(t['unmask q8_0'] / t['ort int8']).toFixed(2)} | ${nat?.toFixed(0) ?? '–'} ms | ${nat ? (t['unmask f32'] / nat).toFixed(2) : '–'} | ${r.agreement[n].maxAbsDiff.toExponential(1)} |`);
  }
  console.log(`\nGeneration, ${r.generate.tokens} tokens × 10 steps (q8_0 file): ${r.generate.ms.toFixed(0)} ms in Chromium, ${native.generate?.toFixed(0) ?? '–'} ms native.\n`);
  const cfg = JSON.parse(readFileSync(`${root}bench/models/${model}/hf/config.json`, 'utf8'));
  const n = Math.max(...lengths);
  const flop = forwardFlop(cfg, n);
  const f32 = flop / r.lengths[n]['unmask f32'] / 1e6;
  const q8 = flop / r.lengths[n]['unmask q8_0'] / 1e6;
  console.log(`Forward at ${n} tokens: ${(flop / 1e9).toFixed(2)} GFLOP; unmask f32 ${f32.toFixed(1)} GFLOP/s = ${(100 * f32 / peak.fmaGflops / threads).toFixed(0)} % of this browser's f32x4 FMA peak × ${threads} (${peak.fmaGflops.toFixed(1)} a thread); unmask q8_0 ${q8.toFixed(1)} G(FL)OP/s (the relaxed int8 dot's peak: ${peak.dotGops.toFixed(0)} GOP/s).\n`);
}
await h.close();
