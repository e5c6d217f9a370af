// Unmask vs ONNX Runtime Web (1 thread each) in one headless Chromium page, plus native
// Unmask (1 thread) on the same GGUF files. Prints medians and ratios as Markdown.
//   python bench/export_onnx.py && (cd bench && npm ci && npm run bench)
// Options (env): MODELS=default,rpln-512x8  LENGTHS=64,128,256  ROUNDS=5  WARM_MS=3000
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { start, CHROMIUM } from '../tests/browser/harness.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const models = (process.env.MODELS || 'default,rpln-512x8').split(',').filter((m) => existsSync(`${root}bench/models/${m}/model.onnx`));
const lengths = (process.env.LENGTHS || '64,128,256').split(',').map(Number);
const rounds = Number(process.env.ROUNDS || 5);
const warmMs = Number(process.env.WARM_MS || 3000);
if (!models.length) throw new Error('no models: run python bench/export_onnx.py first');

const version = (p) => JSON.parse(readFileSync(`${root}${p}`, 'utf8')).version;
const h = await start();
h.page.setDefaultTimeout(0);
const browser = h.browser.version();
const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1];
console.log(`# Unmask vs ONNX Runtime Web\n\n${cpu}, ${(await import('node:os')).cpus().length} cores; Chromium ${browser}; onnxruntime-web ${version('bench/node_modules/onnxruntime-web/package.json')}; one thread each; medians of ${rounds} interleaved rounds after ${warmMs} ms warm-up per engine and length.\n`);
for (const model of models) {
  await h.page.goto(`${h.origin}/bench/page.html`);
  await h.page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  const r = await h.page.evaluate((cfg) => window.bench(cfg), { model, lengths, rounds, warmMs, generate: true });
  // Native, one thread, same files (candle's matmul: the native default).
  const native = {};
  for (const dt of ['f32', 'q8_0']) {
    const o = execFileSync(`${root}target/release/unmask`, ['bench', '-m', `${root}bench/models/${model}/${dt}.gguf`, '--repeats', String(rounds)],
      { env: { ...process.env, RAYON_NUM_THREADS: '1' }, encoding: 'utf8' });
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
}
await h.close();
