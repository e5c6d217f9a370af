#!/usr/bin/env node
// A small static server for the demo and the browser tests: serves the repository root with
// the demo's Content-Security-Policy, cross-origin isolation (COOP/COEP: the page gets
// SharedArrayBuffer, so the engine runs threaded), correct MIME types (application/wasm), and
// byte ranges left out on purpose (models are fetched whole, with Content-Length for progress).
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm',
  '.gguf': 'application/octet-stream', '.svg': 'image/svg+xml', '.png': 'image/png', '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8', '.ico': 'image/x-icon',
};
export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; worker-src 'self'; connect-src 'self'";

/** The headers that make a page cross-origin isolated (what a site must send for threads). */
export const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

/** `isolate: false` leaves COOP/COEP out (the tests of the single-thread fallback). */
export function serve({ port = 8080, host = '127.0.0.1', root = ROOT, quiet = false, isolate = true } = {}) {
  const isolation = isolate ? ISOLATION : {};
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      let path = normalize(decodeURIComponent(url.pathname));
      if (path.endsWith('/')) path += 'index.html';
      const file = join(root, path);
      if (!file.startsWith(root) || /(^|\/)\.(git|ci)(\/|$)/.test(path)) throw Object.assign(new Error('forbidden'), { code: 403 });
      const info = await stat(file);
      if (!info.isFile()) throw Object.assign(new Error('not found'), { code: 404 });
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': TYPES[extname(file)] || 'application/octet-stream',
        'content-length': body.byteLength,
        'content-security-policy': CSP,
        ...isolation,
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-cache',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
      const code = e.code === 403 ? 403 : 404;
      res.writeHead(code, { 'content-type': 'text/plain', 'content-security-policy': CSP });
      res.end(code === 403 ? 'forbidden' : 'not found');
    }
    if (!quiet) console.log(`${res.statusCode} ${req.method} ${req.url}`);
  });
  return new Promise((ok) => server.listen(port, host, () => ok(server)));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.PORT || 8080);
  await serve({ port, quiet: true });
  console.log(`Unmask demo: http://localhost:${port}/`);
}
