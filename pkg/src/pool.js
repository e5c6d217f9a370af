// Threads for the engine: which build runs, with how many threads, and why not more.
// The threaded build needs shared wasm memory (SharedArrayBuffer: a cross-origin isolated
// page, or Node) and a thread that may block while the pool works (a Worker, or Node; a
// page's main thread may not).

/** The most threads `threads: N` may ask for. */
export const MAX_THREADS = 16;
/** `threads: 'auto'` takes the machine's cores up to this many (as ONNX Runtime Web does). */
export const AUTO_THREADS = 4;

const NODE_OS = 'node:os';
const NODE_WORKERS = 'node:worker_threads';
const isNode = typeof process !== 'undefined' && !!process.versions?.node;
const inWorker = typeof WorkerGlobalScope !== 'undefined' && typeof self !== 'undefined' && self instanceof WorkerGlobalScope;
// A worker that has not instantiated the module after this long is taken as failed.
const START_TIMEOUT_MS = 30000;

/** The option's value checked: 'auto' or an integer in 1..MAX_THREADS; a message otherwise. */
export function checkThreads(v) {
  if (v === 'auto' || (Number.isInteger(v) && v >= 1 && v <= MAX_THREADS)) return null;
  return `threads must be 'auto' or an integer from 1 to ${MAX_THREADS}, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`;
}

async function cores() {
  if (isNode) {
    const os = await import(/* @vite-ignore */ NODE_OS);
    return os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  }
  return (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 1;
}

function sharedMemory() {
  try {
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

/**
 * How many threads to run and, when that is 1 where more were asked for or possible, why:
 * `{threads, reason}`. `requested` is 'auto' or a number (checked by the caller).
 */
export async function planThreads(requested, { customWasm = false } = {}) {
  const n = requested === 'auto' ? Math.min(AUTO_THREADS, await cores()) : requested;
  if (requested === 1) return { threads: 1, reason: 'threads: 1 was asked for' };
  if (n === 1) return { threads: 1, reason: 'this machine reports one core' };
  if (customWasm) return { threads: 1, reason: 'a wasm binary given with `wasm` is the single-thread build' };
  if (typeof SharedArrayBuffer === 'undefined') {
    return { threads: 1, reason: isNode ? 'SharedArrayBuffer is not available' : 'the page is not cross-origin isolated (no SharedArrayBuffer): serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp' };
  }
  if (!isNode && globalThis.crossOriginIsolated === false) {
    return { threads: 1, reason: 'the page is not cross-origin isolated: serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp' };
  }
  if (!isNode && !inWorker) return { threads: 1, reason: "worker: false runs the engine on the page's main thread, which may not wait for a pool" };
  if (!sharedMemory()) return { threads: 1, reason: 'this engine has no shared WebAssembly memory (wasm threads)' };
  return { threads: n, reason: null };
}

function spawn(data) {
  return new Promise((resolve, reject) => {
    let worker;
    const fail = (why) => {
      clearTimeout(timer);
      worker?.terminate();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail(`a pool worker did not start within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    const onMessage = (m) => {
      clearTimeout(timer);
      if (m !== 'ready') return fail(`a pool worker failed: ${m?.error ?? m}`);
      // Pool threads then block forever waiting for work: they must not keep Node alive.
      if (isNode) worker.unref();
      resolve(worker);
    };
    (async () => {
      if (isNode) {
        const { Worker } = await import(/* @vite-ignore */ NODE_WORKERS);
        worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: data });
        worker.on('message', onMessage);
        worker.on('error', (e) => fail(`a pool worker failed: ${e?.message || e}`));
      } else {
        worker = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module' });
        worker.onmessage = (ev) => onMessage(ev.data);
        worker.onerror = (ev) => { ev.preventDefault?.(); fail(`a pool worker failed: ${ev.message || 'unknown error'}`); };
        worker.postMessage(data);
      }
    })().catch((e) => fail(`a pool worker failed: ${e?.message || e}`));
  });
}

/**
 * Starts `threads` pool workers on the threaded build's module and memory (`build`: its
 * folder in dist, whose glue they import), then rayon's pool on them. Returns the workers; throws (having stopped any it started) when one fails.
 */
export async function startPool(glue, threads, build) {
  const [module, memory] = glue.poolShared();
  const pool = new glue.Pool(threads);
  const data = { module, memory, receiver: pool.receiver(), build };
  const started = await Promise.allSettled(Array.from({ length: threads }, () => spawn(data)));
  const workers = started.filter((s) => s.status === 'fulfilled').map((s) => s.value);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    for (const w of workers) w.terminate();
    throw failed.reason;
  }
  pool.build();
  return workers;
}
