// Shared browser-test plumbing: the static server (with the demo's CSP) and Debian's Chromium
// driven by playwright-core. Never downloads a browser.
import { createRequire } from 'node:module';
import { serve } from '../../scripts/serve.mjs';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-quic', '--no-first-run', '--disable-dev-shm-usage',
];

/** Starts the server on a free port and a fresh Chromium; returns helpers and a close(). */
export async function start({ webgpu = false, root, isolate = true, flags = [] } = {}) {
  const server = await serve({ port: 0, quiet: true, root, isolate });
  const origin = `http://127.0.0.1:${server.address().port}`;
  // playwright gives every launch a fresh, empty profile.
  const args = [...FLAGS, ...flags];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args, headless: true });
  const context = await browser.newContext();
  const offsite = [];
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith(origin) || u.startsWith('data:') || u.startsWith('blob:')) return route.continue();
    offsite.push(u);
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return {
    origin, browser, context, page, offsite, errors,
    async close() { await browser.close(); server.close(); },
  };
}
