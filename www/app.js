// The Unmask demo. Every string from the user or the model reaches the page through
// textContent, never as HTML.
import { DiffusionLM, AbortError } from '../pkg/src/index.js';
import { EVAL_SECONDS, SAMPLE_SECONDS } from './clock.js';

const DEFAULT_MODEL = 'models/default.gguf';
const SAVED_CACHE = 'unmask-user-models';
const SAVED_KEY = '/__unmask__/trained.gguf';
const MASK_GLYPH = '░░';

const $ = (id) => document.getElementById(id);
const ui = {
  badge: $('badge'), load: $('load'), card: $('model-card'), prompt: $('prompt'),
  generate: $('generate'), stop: $('stop'), fill: $('fill'), canvas: $('canvas'), text: $('text'),
  stepctr: $('stepctr'), steptime: $('steptime'), stepreveal: $('stepreveal'), tip: $('tip'),
  play: $('play'), back: $('back'), fwd: $('fwd'), scrub: $('scrub'), speed: $('speed'),
  corpus: $('corpus'), trainGo: $('train-go'), trainStop: $('train-stop'), tstats: $('t-stats'),
  chart: $('chart'), samples: $('samples'), save: $('save'), restore: $('restore'), reset: $('reset'),
  file: $('file'), dice: $('dice'),
};

const state = {
  lm: null,
  busy: null, // 'load' | 'generate' | 'train'
  start: null, // the canvas before step 1
  history: [], // every step of the last run
  view: 0, // the step shown (0 = start)
  cells: [],
  marked: new Set(),
  abort: null,
  timer: null,
  losses: [],
};

// ---------- loading ----------

function mb(n) { return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`; }

function showProgress(p) {
  const fill = ui.load.querySelector('.fill');
  const label = ui.load.querySelector('.label');
  const pct = p.total ? Math.round((100 * p.loaded) / p.total) : 0;
  fill.style.width = `${p.phase === 'ready' ? 100 : pct}%`;
  ui.load.setAttribute('aria-valuenow', String(pct));
  label.textContent = {
    fetch: `downloading ${mb(p.loaded)}${p.total ? ` / ${mb(p.total)}` : ''}`,
    cache: `from cache ${mb(p.loaded)}${p.total ? ` / ${mb(p.total)}` : ''}`,
    compile: 'compiling kernels…',
    ready: 'ready',
  }[p.phase];
}

async function loadModel(source, what) {
  setBusy('load');
  let ok = false;
  try {
    const old = state.lm;
    state.lm = null;
    await old?.dispose();
    state.lm = await DiffusionLM.load(source, { onProgress: showProgress });
    // Only the first load fills the fields: later loads keep what the user set.
    if (!state.specsApplied) applySpecs(state.lm.options);
    state.specsApplied = true;
    showModel(what);
    ok = true;
  } catch (e) {
    ui.load.querySelector('.label').textContent = `could not load ${what}: ${e.message}`;
    ui.load.querySelector('.label').classList.add('error');
  } finally {
    setBusy(null);
  }
  return ok;
}

function showModel(what) {
  const lm = state.lm;
  const i = lm.info;
  const cpu = `WASM SIMD${lm.wasmFeatures.includes('+relaxed') ? '+FMA' : ''} · ${lm.threads} thread${lm.threads === 1 ? '' : 's'}`;
  ui.badge.textContent = lm.device === 'webgpu' ? 'WebGPU' : cpu;
  ui.badge.title = [
    lm.fallbackReason ? `WebGPU not used: ${lm.fallbackReason}` : 'running on WebGPU',
    `${lm.threads} CPU thread${lm.threads === 1 ? '' : 's'}${lm.threadsReason ? `: ${lm.threadsReason}` : ''}`,
  ].join('\n');
  ui.badge.classList.add('ok');
  ui.card.textContent = `${i.name} (${what}) · ${i.modelType} · ${(i.parameters / 1e6).toFixed(2)} M parameters · ${i.dtype} · ${mb(i.weightBytes)} · context ${i.maxSequenceLen}`;
  ui.load.querySelector('.label').classList.remove('error');
}

// ---------- options ----------

function num(id, fallback) {
  const v = Number($(id).value);
  return Number.isFinite(v) ? v : fallback;
}

/**
 * Fills the option fields (`data-option`, `data-train-option`) from the options' definitions
 * in the core: the default as the value, the range and help as limits and tooltip. The demo
 * keeps no defaults of its own.
 */
function applySpecs(specs) {
  for (const [attr, list] of [['data-option', specs.sampling], ['data-train-option', specs.training]]) {
    for (const el of document.querySelectorAll(`[${attr}]`)) {
      const spec = list.find((s) => s.name === el.getAttribute(attr));
      el.title = spec.help;
      if (spec.kind.type === 'choice') {
        el.replaceChildren(...spec.kind.choices.map((c) => new Option(c, c)));
      } else if (spec.kind.type === 'int' || spec.kind.type === 'real') {
        // Closed ends become the field's limits; open ones are left to the core's check.
        if (spec.kind.type === 'int' || !spec.kind.minOpen) el.min = String(spec.kind.min);
        if (spec.kind.max !== null && (spec.kind.type === 'int' || !spec.kind.maxOpen)) el.max = String(spec.kind.max);
      }
      el.value = spec.default === null ? '' : String(spec.default);
    }
  }
  // Training starts from a time budget rather than a step count (the core's `trainStart`).
  for (const [name, v] of Object.entries(specs.trainStart)) {
    document.querySelector(`[data-train-option="${name}"]`).value = v === null ? '' : String(v);
  }
  const preset = document.getElementById('o-preset');
  preset.replaceChildren(...specs.presets.map((p, i) => new Option(p.name, String(i))));
  preset.onchange = () => applyPreset(specs.presets[Number(preset.value)].options);
  showDefaultLr();
}

/** Sets the option fields to a preset's values (`null`: off, an empty field). */
function applyPreset(options) {
  for (const el of document.querySelectorAll('[data-option]')) {
    const v = options[el.getAttribute('data-option')];
    if (v !== undefined) el.value = v === null ? '' : String(v);
  }
}

/**
 * The learning-rate field shows the default of the mode and method until the user types one;
 * a model from scratch trains every weight, so the fine-tuning fields are off for it.
 */
function showDefaultLr() {
  const scratch = document.querySelector('input[name=mode]:checked').value === 'scratch';
  $('t-lr').placeholder = String(state.lm.options.defaultLr[scratch ? 'scratch' : $('t-method').value]);
  $('t-layers').placeholder = scratch ? 'all' : String(state.lm.options.defaultLayers);
  $('t-method').disabled = $('t-layers').disabled = scratch;
}

/** The given `data-…` fields as options (an empty field: the core's default). */
function readFields(attr) {
  const o = {};
  for (const el of document.querySelectorAll(`[${attr}]`)) {
    if (el.value === '') continue;
    o[el.getAttribute(attr)] = el.tagName === 'SELECT' ? el.value : Number(el.value);
  }
  return o;
}

function samplingOptions() {
  // A fresh seed per run unless the user keeps one: the same click giving the same text
  // every time reads as a broken generator. The drawn seed stays visible for replaying.
  if (!$('o-keep-seed').checked) drawSeed();
  return { ...readFields('data-option'), seed: Math.max(0, Math.round(num('o-seed', 0))), candidates: 5, mask: MASK_GLYPH };
}

// ---------- the canvas ----------

function stateAt(k) {
  return k === 0 ? state.start : state.history[k - 1];
}

/** Where and how each position was revealed, up to step k. */
function revealInfo(k) {
  const info = new Map();
  for (let s = 0; s < k; s++) {
    const st = state.history[s];
    st.revealed.forEach((p, j) => info.set(p, { step: st.step, conf: st.confidence[j], cands: st.candidates[j] || [] }));
  }
  return info;
}

function buildGrid() {
  ui.canvas.replaceChildren();
  state.cells = [];
  const n = state.start.ids.length;
  // The first and last positions hold the start/end tokens: not drawn.
  for (let i = 1; i < n - 1; i++) {
    const c = document.createElement('div');
    c.className = 'cell';
    c.dataset.pos = String(i);
    if (!state.start.fixed[i]) c.tabIndex = 0;
    ui.canvas.append(c);
    state.cells[i] = c;
  }
}

function confClass(c) {
  return c >= 0.7 ? 'high' : c >= 0.3 ? 'mid' : 'low';
}

async function show(k) {
  state.view = k;
  const s = stateAt(k);
  if (!s) return;
  const info = revealInfo(k);
  const newNow = new Set(k > 0 ? Array.from(state.history[k - 1].revealed) : []);
  const maskId = state.start.maskId;
  for (let i = 1; i < s.ids.length - 1; i++) {
    const c = state.cells[i];
    const fixed = state.start.fixed[i];
    const masked = !fixed && s.ids[i] === maskId && !info.has(i);
    const cls = ['cell'];
    if (fixed) cls.push('fixed');
    else if (masked) cls.push('mask');
    else cls.push('gen');
    if (newNow.has(i)) cls.push('new', confClass(info.get(i).conf));
    if (state.marked.has(i) && k === state.history.length) cls.push('marked');
    c.className = cls.join(' ');
    const piece = masked ? MASK_GLYPH : s.pieces[i];
    c.textContent = piece.trim() === '' ? '␣' : piece.trim();
  }
  const total = state.history.at(-1)?.total ?? state.start.total;
  ui.stepctr.textContent = `step ${k}/${total}`;
  const st = k > 0 ? state.history[k - 1] : null;
  ui.steptime.textContent = st ? `${st.ms.toFixed(1)} ms/step` : '';
  ui.stepreveal.textContent = st ? `${st.revealed.length} revealed · ${st.masked} masked` : `${state.start.masked} masked`;
  ui.scrub.max = String(state.history.length);
  ui.scrub.value = String(k);
  // Each step arrives with its text (masks drawn as MASK_GLYPH): no round trip to render.
  ui.text.textContent = s.text;
}

function showTip(cell) {
  const pos = Number(cell.dataset.pos);
  const info = revealInfo(state.view).get(pos);
  if (!info) { ui.tip.hidden = true; return; }
  ui.tip.replaceChildren();
  const head = document.createElement('div');
  head.textContent = `step ${info.step} · confidence ${(100 * info.conf).toFixed(1)}%`;
  ui.tip.append(head);
  for (const c of info.cands) {
    const row = document.createElement('div');
    row.className = 'cand';
    const a = document.createElement('span');
    a.textContent = JSON.stringify(c.piece);
    const b = document.createElement('span');
    b.textContent = `${(100 * c.p).toFixed(1)}%`;
    row.append(a, b);
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${Math.max(2, 100 * c.p)}%`;
    ui.tip.append(row, bar);
  }
  const panel = $('gen').getBoundingClientRect();
  const r = cell.getBoundingClientRect();
  ui.tip.style.left = `${Math.min(r.left - panel.left, panel.width - 190)}px`;
  ui.tip.style.top = `${r.bottom - panel.top + 6}px`;
  ui.tip.hidden = false;
}

// ---------- generation ----------

async function run(makeStream) {
  stopReplay();
  setBusy('generate');
  const ctl = new AbortController();
  state.abort = ctl;
  try {
    const stream = makeStream(ctl.signal);
    state.start = await stream.canvas;
    state.history = [];
    state.marked.clear();
    buildGrid();
    await show(0);
    for await (const s of stream) {
      state.history.push(s);
      await show(state.history.length);
      // Let the page paint this step before asking for the next.
      await new Promise((r) => requestAnimationFrame(() => r()));
    }
  } catch (e) {
    if (e instanceof AbortError) ui.stepreveal.textContent += ' · stopped';
    else { ui.text.textContent = e.message; ui.text.classList.add('error'); }
  } finally {
    state.abort = null;
    setBusy(null);
  }
}

function generate() {
  if (state.busy || !state.lm) return;
  ui.text.classList.remove('error');
  const prompt = ui.prompt.value;
  const opts = samplingOptions();
  const template = /\[MASK|<mask>/.test(prompt);
  run((signal) => (template
    ? state.lm.infill(prompt, { ...opts, signal })
    : state.lm.generate(prompt, { ...opts, length: Math.max(1, Math.round(num('o-length', 32))), signal })));
}

function fillMarked() {
  if (state.busy || !state.marked.size || !state.history.length) return;
  const last = state.history.at(-1);
  const positions = [...state.marked].sort((a, b) => a - b);
  const opts = samplingOptions();
  run((signal) => state.lm.edit(last, positions, { ...opts, signal }));
}

function toggleMark(cell) {
  if (state.busy || !state.history.length || state.view !== state.history.length) return;
  const pos = Number(cell.dataset.pos);
  if (state.start.fixed[pos]) return;
  if (state.marked.has(pos)) state.marked.delete(pos); else state.marked.add(pos);
  show(state.view);
  setBusy(null);
}

// ---------- replay ----------

function stopReplay() {
  clearInterval(state.timer);
  state.timer = null;
  ui.play.textContent = '▶';
  ui.play.setAttribute('aria-label', 'Play');
}

function togglePlay() {
  if (state.timer) { stopReplay(); return; }
  if (state.view >= state.history.length) show(0);
  ui.play.textContent = '||';
  ui.play.setAttribute('aria-label', 'Pause');
  state.timer = setInterval(() => {
    if (state.view >= state.history.length) { stopReplay(); return; }
    show(state.view + 1);
  }, 600 / Number(ui.speed.value));
}

// ---------- training ----------

function drawChart() {
  const cv = ui.chart;
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 640;
  const h = cv.clientHeight || 180;
  cv.width = w * dpr;
  cv.height = h * dpr;
  const g = cv.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const style = getComputedStyle(document.body);
  g.fillStyle = style.color;
  g.font = '11px ui-monospace, monospace';
  const pts = state.losses;
  if (pts.length < 2) { g.fillText('loss', 8, 14); return; }
  const ys = pts.map((p) => p.loss);
  const lo = Math.min(...ys), hi = Math.max(...ys);
  const maxStep = pts.at(-1).step;
  const x = (s) => 40 + ((w - 50) * s) / maxStep;
  const y = (v) => 10 + (h - 30) * (hi === lo ? 0.5 : (hi - v) / (hi - lo));
  g.fillText(hi.toFixed(2), 2, 14);
  g.fillText(lo.toFixed(2), 2, h - 18);
  g.fillText(`step ${maxStep}`, w - 70, h - 4);
  g.strokeStyle = getComputedStyle(ui.generate).backgroundColor;
  g.lineWidth = 1.5;
  g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p.step), y(p.loss)) : g.moveTo(x(p.step), y(p.loss))));
  g.stroke();
}

function addSample(text) {
  const li = document.createElement('li');
  li.textContent = text;
  ui.samples.append(li);
  // The newest sample (last: the kept weights' text) in view inside the list's own scroll.
  ui.samples.scrollTop = ui.samples.scrollHeight;
}

/** " (ELBO ppl 212.6)" for an evaluation, nothing without one. */
const ppl = (e) => (e?.elboPerplexity != null ? ` (ELBO ppl ${e.elboPerplexity.toFixed(1)})` : '');

async function train() {
  if (state.busy || !state.lm) return;
  const corpus = ui.corpus.value;
  const mode = document.querySelector('input[name=mode]:checked').value;
  const given = readFields('data-train-option');
  setBusy('train');
  const ctl = new AbortController();
  state.abort = ctl;
  state.losses = [];
  ui.samples.replaceChildren();
  drawChart();
  const t0 = performance.now();
  let run = null;
  try {
    // Under a time budget the step count is not known: samples and evaluations (the
    // candidates Stop chooses from) come on a clock.
    const steps = given.steps ?? (given.seconds ? null : state.lm.options.training.find((s) => s.name === 'steps').default);
    const every = (k) => (steps ? Math.max(10, Math.floor(steps / k)) : 1_000_000);
    run = state.lm.train(corpus, { ...given, mode, signal: ctl.signal, evalEvery: every(10), sampleEvery: every(5), sampleLength: 24 });
    const info = await run.start;
    ui.tstats.textContent = `${info.documents} documents · ${info.trainTokens} tokens · ${(info.parameters / 1e6).toFixed(2)} M parameters`;
    // A fine-tune shows the loaded model's text first, for the same prompt and seed as the
    // samples during training: before and after, one above the other.
    if (mode === 'finetune') addSample(`before${ppl(info.eval)}: ${await run.sample()}`);
    let sampled = performance.now();
    let evaluated = sampled;
    for await (const r of run) {
      state.losses.push({ step: r.step, loss: r.loss });
      drawChart();
      const elapsed = (performance.now() - t0) / 1000;
      const eta = Math.min((elapsed / r.step) * (r.steps - r.step), given.seconds ? given.seconds - elapsed : Infinity);
      let { sample, eval: e } = r;
      if (sample === undefined && !steps && performance.now() - sampled >= SAMPLE_SECONDS * 1000) sample = await run.sample();
      if (!steps && (e || sample !== undefined || performance.now() - evaluated >= EVAL_SECONDS * 1000)) {
        e ??= await run.evaluate();
        evaluated = performance.now();
      }
      ui.tstats.textContent = `step ${r.step}${steps ? `/${r.steps}` : ''} · loss ${r.loss.toFixed(3)} · ${Math.round(r.tokensPerSec)} tok/s · ETA ${Math.max(0, eta).toFixed(0)} s`
        + (e ? ` · ELBO ppl ${e.elboPerplexity.toFixed(1)}` : '');
      if (sample !== undefined) {
        addSample(`step ${r.step}${ppl(e)}: ${sample}`);
        sampled = performance.now();
      }
    }
  } catch (e) {
    if (!(e instanceof AbortError)) ui.tstats.textContent = `training stopped: ${e.message}`;
    else ui.tstats.textContent += ' · stopped';
  }
  try {
    // A fine-tune ends on its best evaluated weights: say which, and show their text.
    const k = run?.kept;
    if (k && k.elboPerplexity !== null && k.step !== state.losses.at(-1)?.step) {
      const which = k.step === 0 ? 'the loaded model\'s weights (training only raised the ELBO perplexity)' : `the weights of step ${k.step}`;
      const text = await state.lm.generateText((await run.start).samplePrompt, { length: 24, seed: 0 });
      addSample(`kept ${which}${ppl(k)}: ${text}`);
    }
  } catch (e) {
    ui.tstats.textContent = `training stopped: ${e.message}`;
  } finally {
    state.abort = null;
    setBusy(null);
    if (state.lm) showModel('trained here');
  }
}

async function saveModel() {
  const bytes = await state.lm.export('q8_0');
  const blob = new Blob([bytes], { type: 'application/octet-stream' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `${state.lm.info.name || 'unmask'}.gguf`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  if (typeof caches !== 'undefined') {
    const c = await caches.open(SAVED_CACHE);
    await c.put(SAVED_KEY, new Response(blob, { headers: { 'content-length': String(bytes.byteLength) } }));
    ui.restore.disabled = false;
  }
}

async function restoreSaved() {
  const c = await caches.open(SAVED_CACHE);
  const res = await c.match(SAVED_KEY);
  if (res) await loadModel(new Uint8Array(await res.arrayBuffer()), 'saved in this browser');
}

async function hasSaved() {
  if (typeof caches === 'undefined') return false;
  const c = await caches.open(SAVED_CACHE);
  return !!(await c.match(SAVED_KEY));
}

// ---------- wiring ----------

function setBusy(what) {
  state.busy = what;
  const idle = !what && !!state.lm;
  ui.generate.disabled = !idle;
  ui.stop.disabled = what !== 'generate';
  ui.fill.disabled = !idle || state.marked.size === 0;
  ui.trainGo.disabled = !idle;
  ui.trainStop.disabled = what !== 'train';
  ui.save.disabled = !idle;
  ui.reset.disabled = !idle;
  const replay = idle && state.history.length > 0;
  for (const b of [ui.play, ui.back, ui.fwd, ui.scrub]) b.disabled = !replay;
  if (idle) hasSaved().then((h) => { ui.restore.disabled = !h || !!state.busy; });
  else ui.restore.disabled = true;
}

ui.generate.addEventListener('click', generate);
ui.stop.addEventListener('click', () => {
  state.stopRequestedAt = state.history.length;
  state.abort?.abort();
});
ui.trainStop.addEventListener('click', () => state.abort?.abort());
ui.fill.addEventListener('click', fillMarked);
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') state.abort?.abort();
});
function drawSeed() {
  $('o-seed').value = String(Math.floor(Math.random() * 1e6));
}
ui.dice.addEventListener('click', drawSeed);
$('o-seed').addEventListener('input', () => { $('o-keep-seed').checked = true; });
ui.canvas.addEventListener('mouseover', (e) => { const c = e.target.closest('.cell'); if (c) showTip(c); });
ui.canvas.addEventListener('mouseleave', () => { ui.tip.hidden = true; });
ui.canvas.addEventListener('focusin', (e) => { const c = e.target.closest('.cell'); if (c) showTip(c); });
ui.canvas.addEventListener('focusout', () => { ui.tip.hidden = true; });
ui.canvas.addEventListener('click', (e) => { const c = e.target.closest('.cell'); if (c) toggleMark(c); });
ui.canvas.addEventListener('keydown', (e) => {
  const c = e.target.closest('.cell');
  if (c && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); toggleMark(c); }
});
ui.play.addEventListener('click', togglePlay);
ui.back.addEventListener('click', () => { stopReplay(); show(Math.max(0, state.view - 1)); });
ui.fwd.addEventListener('click', () => { stopReplay(); show(Math.min(state.history.length, state.view + 1)); });
ui.scrub.addEventListener('input', () => { stopReplay(); show(Number(ui.scrub.value)); });
ui.speed.addEventListener('change', () => { if (state.timer) { stopReplay(); togglePlay(); } });
ui.trainGo.addEventListener('click', train);
$('sample-corpus').addEventListener('click', async () => {
  const r = await fetch('www/sample-corpus.txt');
  ui.corpus.value = await r.text();
});
$('t-method').addEventListener('change', showDefaultLr);
for (const r of document.querySelectorAll('input[name=mode]')) {
  r.addEventListener('change', showDefaultLr);
}
ui.corpus.addEventListener('dragover', (e) => e.preventDefault());
ui.corpus.addEventListener('drop', async (e) => {
  e.preventDefault();
  const f = e.dataTransfer.files[0];
  if (f) ui.corpus.value = await f.text();
});
ui.save.addEventListener('click', () => saveModel().catch((e) => { ui.tstats.textContent = e.message; }));
ui.restore.addEventListener('click', restoreSaved);
ui.reset.addEventListener('click', () => loadModel(DEFAULT_MODEL, 'default'));
ui.file.addEventListener('change', () => {
  const f = ui.file.files[0];
  if (f) loadModel(f, f.name);
  ui.file.value = '';
});
window.addEventListener('resize', drawChart);

window.unmaskDemo = state; // for the browser tests
loadModel(DEFAULT_MODEL, 'default').then(() => { document.body.dataset.ready = 'true'; });
