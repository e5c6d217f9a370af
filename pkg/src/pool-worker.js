// One thread of an engine's pool (the threaded build): instantiates the core on the engine's
// shared memory, says so, then runs its pool thread until the engine's realm ends. Started by
// pool.js in a Web Worker (from the engine's Worker) or a Node worker thread.
const NODE_WORKERS = 'node:worker_threads';

// Named literally, as in host.js, so bundlers include both.
const GLUES = {
  threads: () => import('../dist/threads/unmask.js'),
  'threads-relaxed': () => import('../dist/threads-relaxed/unmask.js'),
};

async function run({ module, memory, receiver, build }, ready) {
  const glue = await GLUES[build]();
  await glue.default({ module_or_path: module, memory });
  ready();
  glue.poolWorkerRun(receiver);
}

if (typeof self !== 'undefined' && typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope) {
  self.onmessage = (ev) => {
    self.onmessage = null;
    run(ev.data, () => self.postMessage('ready')).catch((e) => self.postMessage({ error: String(e?.message || e) }));
  };
} else {
  const { parentPort, workerData } = await import(/* @vite-ignore */ NODE_WORKERS);
  run(workerData, () => parentPort.postMessage('ready')).catch((e) => parentPort.postMessage({ error: String(e?.message || e) }));
}
