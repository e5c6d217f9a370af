// A tiny Vite app that imports the package by name builds, and its built page generates text
// in headless Chromium (Worker path, wasm asset resolved by the bundler).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { start } from './harness.mjs';

const JS = fileURLToPath(new URL('../js/', import.meta.url));
let h;
after(() => h?.close());

test('a Vite build of a consumer app generates in Chromium', async () => {
  execFileSync('npx', ['vite', 'build', 'vite-app'], { cwd: JS, stdio: 'inherit' });
  h = await start();
  await h.page.goto(`${h.origin}/tests/js/vite-app/dist/index.html`);
  await h.page.waitForFunction(() => document.getElementById('out').textContent !== 'loading', null, { timeout: 60_000 });
  const out = await h.page.textContent('#out');
  assert.match(out, /^ok wasm: The cat/);
  assert.deepEqual(h.offsite, []);
});

test('the package type-checks for a strict TypeScript consumer', () => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: JS, stdio: 'inherit' });
});
