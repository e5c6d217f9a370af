// The demo page in headless Chromium: generation view, stop, edit in place, training panel,
// safe rendering, and no request leaving the origin. Screenshots go to tests/artifacts/.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { start } from './harness.mjs';

const ART = new URL('../artifacts/', import.meta.url).pathname;
let h;
let dialogs = 0;

before(async () => {
  await mkdir(ART, { recursive: true });
  h = await start();
  h.page.on('dialog', (d) => { dialogs++; d.dismiss(); });
  await h.page.setViewportSize({ width: 1280, height: 900 });
  await h.page.goto(`${h.origin}/`);
  await h.page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  await h.page.click('#advanced summary');
});
after(() => h.close());

const idle = () => h.page.waitForFunction(() => !window.unmaskDemo.busy, null, { timeout: 60_000 });

async function setOptions(o) {
  for (const [id, v] of Object.entries(o)) await h.page.fill(`#${id}`, String(v));
}

test('served as scripts/serve serves it (cross-origin isolated), the demo runs threaded and says so', async () => {
  const { threads, badge } = await h.page.evaluate(() => ({ threads: window.unmaskDemo.lm.threads, badge: document.getElementById('badge').textContent }));
  assert.ok(threads > 1, `threads ${threads}`);
  assert.match(badge, new RegExp(`${threads} threads`));
});

test('the option fields start at the core\'s defaults (training: its time budget for the demo)', async () => {
  const fields = await h.page.evaluate(() => {
    const specs = window.unmaskDemo.lm.options;
    const out = [];
    for (const [attr, list] of [['data-option', specs.sampling], ['data-train-option', specs.training]]) {
      for (const el of document.querySelectorAll(`[${attr}]`)) {
        const spec = list.find((s) => s.name === el.getAttribute(attr));
        const start = attr === 'data-train-option' && spec.name in specs.trainStart ? specs.trainStart[spec.name] : spec.default;
        out.push({ name: spec.name, value: el.value, want: start === null ? '' : String(start), title: el.title, help: spec.help });
      }
    }
    const scratch = document.querySelector('input[name=mode]:checked').value === 'scratch';
    const lr = specs.defaultLr[scratch ? 'scratch' : document.getElementById('t-method').value];
    return { out, lrPlaceholder: document.getElementById('t-lr').placeholder, defaultLr: lr };
  });
  assert.ok(fields.out.length >= 10, `${fields.out.length} option fields`);
  for (const f of fields.out) {
    assert.equal(f.value, f.want, `${f.name}: the demo shows ${f.value}, the core's default is ${f.want}`);
    assert.equal(f.title, f.help);
  }
  assert.equal(fields.lrPlaceholder, String(fields.defaultLr), 'the learning-rate field shows the mode\'s default');
});

test('the preset menu switches to the classic recipe and back to the defaults', async () => {
  const presets = await h.page.evaluate(() => window.unmaskDemo.lm.options.presets);
  assert.deepEqual(presets.map((p) => p.name), await h.page.$$eval('#o-preset option', (os) => os.map((o) => o.textContent)));
  const classic = presets.findIndex((p) => p.name.startsWith('classic recipe'));
  assert.ok(classic > 0, 'the defaults come first, the classic recipe after them');
  assert.equal(presets[classic].options.strategy, 'random');
  assert.equal(presets[classic].options.steps, 10);
  await h.page.selectOption('#o-preset', String(classic));
  assert.equal(await h.page.inputValue('#o-strategy'), 'random');
  assert.equal(await h.page.inputValue('#o-steps'), '10');
  assert.equal(await h.page.inputValue('#o-reppen'), '1');
  await h.page.selectOption('#o-preset', '0');
  const specs = await h.page.evaluate(() => window.unmaskDemo.lm.options.sampling);
  const want = (n) => { const d = specs.find((s) => s.name === n).default; return d === null ? '' : String(d); };
  assert.equal(await h.page.inputValue('#o-strategy'), want('strategy'));
  assert.equal(await h.page.inputValue('#o-steps'), want('steps'));
  assert.equal(await h.page.inputValue('#o-reppen'), want('repetitionPenalty'));
});

test('generation renders every step in place', async () => {
  await setOptions({ 'o-steps': 8, 'o-length': 24, 'o-seed': 3 });
  await h.page.fill('#prompt', 'the old house');
  await h.page.click('#generate');
  await h.page.waitForFunction(() => window.unmaskDemo.history.length >= 4);
  await h.page.screenshot({ path: `${ART}demo-mid.png` });
  await idle();
  const n = await h.page.evaluate(() => window.unmaskDemo.history.length);
  assert.equal(n, 8);
  assert.equal(await h.page.textContent('#stepctr'), 'step 8/8');
  // Scrub through the replay: the DOM's mask cells go down at every step, cells never move.
  const masks = [];
  const boxes = [];
  for (let k = 0; k <= n; k++) {
    await h.page.fill('#scrub', String(k));
    await h.page.dispatchEvent('#scrub', 'input');
    await h.page.waitForFunction((k) => window.unmaskDemo.view === k, k);
    masks.push(await h.page.locator('#canvas .cell.mask').count());
    boxes.push(await h.page.evaluate(() => [...document.querySelectorAll('#canvas .cell')].map((c) => c.getBoundingClientRect().x + ',' + c.getBoundingClientRect().y).join(';')));
  }
  assert.equal(masks[0], 24);
  for (let k = 1; k <= n; k++) assert.ok(masks[k] < masks[k - 1], `masks ${masks}`);
  assert.equal(masks[n], 0);
  assert.ok(boxes.every((b) => b === boxes[0]), 'no layout shift while tokens unmask');
  const text = await h.page.textContent('#text');
  assert.ok(text.trim().length > 'the old house'.length);
  await h.page.hover('#canvas .cell.gen');
  assert.equal(await h.page.isVisible('#tip'), true);
  await h.page.screenshot({ path: `${ART}demo-final.png`, fullPage: true });
});

test('every run draws a new seed unless the seed is kept', async () => {
  await setOptions({ 'o-steps': 4, 'o-length': 12 });
  // Typing a seed (the test above did) keeps it.
  assert.equal(await h.page.isChecked('#o-keep-seed'), true);
  await h.page.uncheck('#o-keep-seed');
  const runs = [];
  for (let r = 0; r < 2; r++) {
    await h.page.click('#generate');
    await idle();
    runs.push([await h.page.inputValue('#o-seed'), await h.page.textContent('#text')]);
  }
  assert.notEqual(runs[0][0], runs[1][0], 'a new seed per run');
  assert.notEqual(runs[0][1], runs[1][1], 'new text per run');
  await h.page.check('#o-keep-seed');
  await h.page.click('#generate');
  await idle();
  assert.deepEqual([await h.page.inputValue('#o-seed'), await h.page.textContent('#text')], runs[1], 'a kept seed repeats the run');
});

test('Stop halts within one step', async () => {
  const ctx = await h.page.evaluate(() => window.unmaskDemo.lm.info.maxSequenceLen);
  const length = Math.min(120, ctx - 20);
  await setOptions({ 'o-steps': length, 'o-length': length });
  await h.page.click('#generate');
  await h.page.waitForFunction(() => window.unmaskDemo.history.length >= 2);
  await h.page.click('#stop');
  await idle();
  const at = await h.page.evaluate(() => window.unmaskDemo.stopRequestedAt);
  const end = await h.page.evaluate(() => window.unmaskDemo.history.length);
  assert.ok(end <= at + 1 && end < length, `stopped at ${end} after clicking at ${at}`);
  assert.match(await h.page.textContent('#stepreveal'), /stopped/);
});

test('re-masking a token and filling changes only that cell', async () => {
  await setOptions({ 'o-steps': 6, 'o-length': 16, 'o-seed': 5 });
  await h.page.click('#generate');
  await idle();
  const before = await h.page.evaluate(() => Array.from(window.unmaskDemo.history.at(-1).ids));
  const cell = h.page.locator('#canvas .cell.gen').nth(3);
  const pos = Number(await cell.getAttribute('data-pos'));
  await cell.click();
  assert.match(await cell.getAttribute('class'), /marked/);
  await h.page.click('#fill');
  await idle();
  const after = await h.page.evaluate(() => Array.from(window.unmaskDemo.history.at(-1).ids));
  const last = await h.page.evaluate(() => window.unmaskDemo.history.at(-1));
  assert.deepEqual(Array.from(Object.values(last.revealed)), [pos]);
  for (let i = 0; i < before.length; i++) if (i !== pos) assert.equal(after[i], before[i], `position ${i} changed`);
});

test('user text is rendered as text, never as HTML', async () => {
  const evil = '<img src=x onerror=alert(1)> <script>alert(2)</script>';
  await h.page.fill('#prompt', evil);
  await setOptions({ 'o-steps': 4, 'o-length': 8 });
  await h.page.click('#generate');
  await idle();
  assert.equal(await h.page.locator('main img, main script').count(), 0);
  assert.equal(dialogs, 0);
});

test('training on the sample corpus plots a falling loss', async () => {
  await h.page.click('#sample-corpus');
  await h.page.waitForFunction(() => document.getElementById('corpus').value.length > 1000);
  assert.equal(await h.page.inputValue('#t-seconds'), '60', 'training starts from a one-minute budget');
  // Markup at the start of every document: the samples' prompt (the first training
  // document's first words) has it, shown as text, never parsed.
  await h.page.evaluate(() => { const c = document.getElementById('corpus'); c.value = c.value.split('\n\n').map((d) => '<img src=x onerror=alert(1)> ' + d).join('\n\n'); });
  await h.page.fill('#t-steps', '40');
  await h.page.fill('#t-lr', '0.003');
  await h.page.click('#train-go');
  await h.page.waitForFunction(() => window.unmaskDemo.losses.length >= 5);
  await h.page.screenshot({ path: `${ART}demo-training.png`, fullPage: true });
  await idle();
  const losses = await h.page.evaluate(() => window.unmaskDemo.losses.map((l) => l.loss));
  assert.equal(losses.length, 40);
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  assert.ok(mean(losses.slice(-5)) < mean(losses.slice(0, 5)), `loss ${losses.slice(0, 5)} … ${losses.slice(-5)}`);
  assert.ok((await h.page.locator('#samples li').count()) >= 1);
  assert.equal(await h.page.locator('main img').count(), 0);
  assert.equal(dialogs, 0);
  await h.page.screenshot({ path: `${ART}demo-trained.png`, fullPage: true });
});

test('fine-tuning shows the loaded model\'s text before training and samples after it', async () => {
  await h.page.check('input[name=mode][value=finetune]');
  await h.page.selectOption('#t-method', 'lora');
  const lr = await h.page.evaluate(() => [document.getElementById('t-lr').placeholder, window.unmaskDemo.lm.options.defaultLr.lora]);
  assert.equal(lr[0], String(lr[1]), 'the learning-rate field shows LoRA\'s default');
  assert.equal(await h.page.getAttribute('#t-layers', 'placeholder'), String(await h.page.evaluate(() => window.unmaskDemo.lm.options.defaultLayers)));
  await h.page.fill('#t-layers', '1');
  await h.page.fill('#t-steps', '3');
  await h.page.fill('#t-lr', '');
  await h.page.click('#train-go');
  await h.page.waitForFunction(() => document.querySelectorAll('#samples li').length >= 2);
  await idle();
  const items = await h.page.$$eval('#samples li', (ls) => ls.map((l) => l.textContent));
  // The loaded model's figure with its text, the last step's with its own; then, when the
  // run's best evaluation was another step's, the weights kept and their text.
  assert.match(items[0], /^before \(ELBO ppl \d+\.\d\): /, items.join('\n'));
  assert.match(items[1], /^step 3 \(ELBO ppl \d+\.\d\): /, items.join('\n'));
  const ppl = (item) => Number(/ELBO ppl ([\d.]+)/.exec(item)[1]);
  if (ppl(items[0]) < ppl(items[1])) assert.match(items[2], /^kept the loaded model's weights/, items.join('\n'));
  else assert.equal(items.length, 2, items.join('\n'));
  // The prompt is the first training document's first words, markup included: shown as
  // text, never parsed.
  assert.equal(await h.page.locator('main img').count(), 0);
  assert.equal(dialogs, 0);
});

test('no request left the origin and the page logged no errors', () => {
  assert.deepEqual(h.offsite, []);
  assert.deepEqual(h.errors, []);
});
