// A forward after an idle spell, in Node: the median of 9 calls (logits of one row) after each
// pause, for a few lengths and thread counts, to see what a pool's first call after a pause
// costs. On this project's 2-core VMs the guest kernel packs runnable threads onto one vCPU
// after ~100 ms idle (`kernel.sched_vcpu_pack`), and a two-thread call then runs both threads
// on one vCPU for a while (bench/RESULTS.md). `taskset -c 0 node bench/idle.mjs` shows one vCPU.
//   node bench/idle.mjs        (env: MODEL=models/default.gguf THREADS=1,2 LENGTHS=16,64,256 IDLE=0,10,30,100,300)
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DiffusionLM } from '../pkg/src/index.js';

const model = process.env.MODEL || fileURLToPath(new URL('../models/default.gguf', import.meta.url));
const list = (v, d) => (v || d).split(',').map(Number);
const median = (v) => v.sort((a, b) => a - b)[v.length >> 1];

async function measure(threads) {
  const lm = await DiffusionLM.load(new Uint8Array(await readFile(model)), { threads, worker: false });
  const rows = {};
  for (const n of list(process.env.LENGTHS, '16,64,256')) {
    const ids = Array.from({ length: n }, (_, i) => 5 + ((i * 7919) % 2000));
    for (let i = 0; i < 20; i++) await lm.logits(ids, [0]);
    rows[n] = {};
    for (const idle of list(process.env.IDLE, '0,10,30,100,300')) {
      const t = [];
      for (let i = 0; i < 9; i++) {
        if (idle) await new Promise((r) => setTimeout(r, idle));
        const t0 = performance.now();
        await lm.logits(ids, [0]);
        t.push(performance.now() - t0);
      }
      rows[n][idle] = median(t);
    }
  }
  const out = { threads: lm.threads, rows };
  await lm.dispose();
  return out;
}

// One realm holds one module and pool: each thread count runs in a process of its own.
if (process.argv[2] === '--one') {
  console.log(JSON.stringify(await measure(Number(process.argv[3]))));
} else {
  const idles = list(process.env.IDLE, '0,10,30,100,300');
  console.log(`| threads | tokens | ${idles.map((i) => `after ${i} ms idle`).join(' | ')} |`);
  console.log(`|---|---|${idles.map(() => '---|').join('')}`);
  for (const threads of list(process.env.THREADS, '1,2')) {
    const r = JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', String(threads)], { encoding: 'utf8' }));
    for (const [n, row] of Object.entries(r.rows)) console.log(`| ${r.threads} | ${n} | ${idles.map((i) => `${row[i].toFixed(1)} ms`).join(' | ')} |`);
  }
}
