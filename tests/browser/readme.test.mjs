// Every JS example in README.md and pkg/README.md runs as written in Chromium, served like the
// demo (the model at /models/default.gguf). The one change: the bare specifier 'unmask' points
// at the package's source, as a bundler or an import map would.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { start } from './harness.mjs';

const root = new URL('../../', import.meta.url);
const OUT = new URL('target/readme-js/', root);

function jsBlocks(md) {
  return [...md.matchAll(/^```js\n([\s\S]*?)^```/gm)].map((m) => m[1]);
}

const examples = [];
for (const file of ['README.md', 'pkg/README.md']) {
  jsBlocks(await readFile(new URL(file, root), 'utf8')).forEach((code, i) => examples.push({ file, i, code }));
}
await mkdir(OUT, { recursive: true });

const h = await start();
after(() => h.close());

test('the READMEs show JS examples', () => {
  assert.ok(examples.some((e) => e.file === 'README.md') && examples.some((e) => e.file === 'pkg/README.md'));
});

for (const [n, ex] of examples.entries()) {
  test(`${ex.file} example ${ex.i + 1} runs`, async () => {
    assert.match(ex.code, /from 'unmask'/);
    await writeFile(new URL(`${n}.mjs`, OUT), ex.code.replace("from 'unmask'", "from '/pkg/src/index.js'"));
    const logs = [];
    const onLog = (m) => { if (m.type() === 'log') logs.push(m.text()); };
    h.page.on('console', onLog);
    h.errors.length = 0;
    await h.page.goto(`${h.origin}/tests/browser/readme.html?n=${n}`);
    await h.page.waitForFunction(() => window.result, null, { timeout: 120_000 });
    h.page.off('console', onLog);
    const r = await h.page.evaluate(() => window.result);
    assert.deepEqual(r, { ok: true }, `${ex.file} example ${ex.i + 1}: ${r.error}`);
    assert.deepEqual(h.errors, []);
    assert.ok(logs.length > 0, 'the example printed nothing');
    const last = logs.at(-1);
    assert.ok(!/<mask>|\[MASK\]/.test(last), `the example's last line still has masks: ${last}`);
    console.log(`${ex.file} example ${ex.i + 1}: ${logs.length} lines, last: ${last}`);
  });
}
