// Getting model bytes from wherever they are, with byte-accurate progress and the Cache API.
import { AbortError, FetchError, OptionsError } from './errors.js';

// Node-only modules, named through variables so browser bundlers leave them alone.
const NODE_FS = 'node:fs/promises';
const NODE_URL = 'node:url';
const CACHE_NAME = 'unmask-models-v1';
const isNode = typeof process !== 'undefined' && !!process.versions?.node;

async function readStream(stream, total, phase, progress, signal) {
  const reader = stream.getReader();
  const chunks = [];
  let loaded = 0;
  progress({ phase, loaded, total });
  for (;;) {
    if (signal?.aborted) {
      await reader.cancel();
      throw new AbortError('loading was aborted');
    }
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    progress({ phase, loaded, total: Math.max(total, loaded) });
  }
  const out = new Uint8Array(loaded);
  let off = 0;
  for (const c of chunks) { out.set(c, off); off += c.byteLength; }
  return out;
}

async function fromResponse(res, phase, progress, signal) {
  const total = Number(res.headers.get('content-length')) || 0;
  if (!res.body) {
    const b = new Uint8Array(await res.arrayBuffer());
    progress({ phase, loaded: b.byteLength, total: b.byteLength });
    return b;
  }
  const bytes = await readStream(res.body, total, phase, progress, signal);
  if (total && bytes.byteLength !== total) {
    throw new FetchError(`download ended after ${bytes.byteLength} of ${total} bytes`);
  }
  return bytes;
}

async function fromUrl(url, { progress, signal, cache }) {
  if (url.protocol === 'file:' && isNode) {
    const { readFile } = await import(/* @vite-ignore */ NODE_FS);
    const b = await readFile(url).catch((e) => { throw new FetchError(`cannot read ${url.pathname}: ${e.message}`); });
    progress({ phase: 'fetch', loaded: b.byteLength, total: b.byteLength });
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const store = cache && typeof caches !== 'undefined' ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const hit = store && (await store.match(url.href));
  if (hit) return fromResponse(hit, 'cache', progress, signal);
  let res;
  try {
    res = await fetch(url.href, { signal });
  } catch (e) {
    if (signal?.aborted) throw new AbortError('loading was aborted');
    throw new FetchError(`cannot fetch ${url.href}: ${e.message}`);
  }
  if (!res.ok) throw new FetchError(`cannot fetch ${url.href}: HTTP ${res.status}`);
  const bytes = await fromResponse(res, 'fetch', progress, signal);
  if (store) {
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) };
    await store.put(url.href, new Response(bytes, { headers })).catch(() => {});
  }
  return bytes;
}

/** Bytes of a model given as URL, path (Node), Uint8Array, ArrayBuffer, Blob or File. */
export async function readSource(source, opts) {
  if (source instanceof Uint8Array) {
    opts.progress({ phase: 'fetch', loaded: source.byteLength, total: source.byteLength });
    return source.slice();
  }
  if (source instanceof ArrayBuffer) return readSource(new Uint8Array(source), opts);
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    return readStream(source.stream(), source.size, 'fetch', opts.progress, opts.signal);
  }
  if (source instanceof URL) return fromUrl(source, opts);
  if (typeof source === 'string') {
    if (isNode && !/^[a-z][a-z0-9+.-]*:/i.test(source)) {
      const { pathToFileURL } = await import(/* @vite-ignore */ NODE_URL);
      return fromUrl(pathToFileURL(source), opts);
    }
    const base = typeof location !== 'undefined' ? location.href : undefined;
    let url;
    try { url = new URL(source, base); } catch { throw new OptionsError(`not a URL: ${source}`); }
    return fromUrl(url, opts);
  }
  throw new OptionsError('source must be a URL, a path, a Uint8Array, an ArrayBuffer, a Blob or a File');
}

/** Removes every cached model. */
export async function clearCache() {
  if (typeof caches !== 'undefined') await caches.delete(CACHE_NAME);
}
