// Validation of caller options before they cross into wasm, so mistakes are OptionsErrors
// with the option's name, not deserialisation messages.
import { OptionsError } from './errors.js';

const STRATEGIES = ['random', 'confidence', 'threshold'];
const SCHEDULES = ['linear', 'cosine'];

function int(o, key, min, max) {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new OptionsError(`${key} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(o, key, ok, range) {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) {
    throw new OptionsError(`${key} must be a number in ${range}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function oneOf(o, key, allowed) {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!allowed.includes(v)) throw new OptionsError(`${key} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v;
}

const GENERATE_KEYS = new Set([
  'length', 'steps', 'strategy', 'schedule', 'threshold', 'blockLength', 'temperature', 'topK', 'topP',
  'repetitionPenalty', 'seed', 'candidates', 'signal', 'pins',
]);

/** Splits generate() options into the engine's sampling options and the rest. */
export function samplingOptions(opts = {}) {
  if (opts === null || typeof opts !== 'object') throw new OptionsError('options must be an object');
  for (const k of Object.keys(opts)) {
    if (!GENERATE_KEYS.has(k)) throw new OptionsError(`unknown option \`${k}\``);
  }
  const out = {};
  const set = (k, v) => { if (v !== undefined) out[k] = v; };
  set('steps', int(opts, 'steps', 1, 4096));
  set('strategy', oneOf(opts, 'strategy', STRATEGIES));
  set('schedule', oneOf(opts, 'schedule', SCHEDULES));
  set('threshold', num(opts, 'threshold', (v) => v > 0 && v <= 1, '(0, 1]'));
  set('blockLength', int(opts, 'blockLength', 1, 1 << 16));
  set('temperature', num(opts, 'temperature', (v) => v > 0, '(0, ∞)'));
  set('topK', int(opts, 'topK', 0, 1 << 20));
  set('topP', num(opts, 'topP', (v) => v > 0 && v <= 1, '(0, 1]'));
  set('repetitionPenalty', num(opts, 'repetitionPenalty', (v) => v > 0, '(0, ∞)'));
  set('seed', int(opts, 'seed', 0, Number.MAX_SAFE_INTEGER));
  set('candidates', int(opts, 'candidates', 0, 64));
  const length = int(opts, 'length', 1, 1 << 16);
  let pins;
  if (opts.pins !== undefined) {
    if (!Array.isArray(opts.pins)) throw new OptionsError('pins must be an array of {position, text}');
    pins = opts.pins.map((p, i) => {
      if (!p || typeof p.text !== 'string' || !Number.isInteger(p.position) || p.position < 0) {
        throw new OptionsError(`pins[${i}] must be {position: integer ≥ 0, text: string}`);
      }
      return { position: p.position, text: p.text };
    });
  }
  if (opts.signal !== undefined && !(opts.signal && typeof opts.signal.aborted === 'boolean')) {
    throw new OptionsError('signal must be an AbortSignal');
  }
  return { options: out, length, pins, signal: opts.signal };
}

const TRAIN_KEYS = new Set([
  'mode', 'size', 'vocab', 'steps', 'lr', 'batchSize', 'seqLen', 'schedule', 'maxPrefix', 'seed', 'warmup',
  'accumulate', 'windows', 'evalEvery', 'sampleEvery', 'samplePrompt', 'sampleLength', 'signal', 'adopt',
]);

/** Checks train() options; returns the engine request and the loop settings. */
export function trainOptions(opts = {}) {
  if (opts === null || typeof opts !== 'object') throw new OptionsError('options must be an object');
  for (const k of Object.keys(opts)) if (!TRAIN_KEYS.has(k)) throw new OptionsError(`unknown option \`${k}\``);
  const mode = oneOf(opts, 'mode', ['finetune', 'scratch']) ?? 'finetune';
  const steps = int(opts, 'steps', 1, 1_000_000) ?? 200;
  const options = { totalSteps: steps };
  const set = (k, v) => { if (v !== undefined) options[k] = v; };
  set('lr', num(opts, 'lr', (v) => v > 0 && v < 1, '(0, 1)'));
  set('batchSize', int(opts, 'batchSize', 1, 4096));
  set('seqLen', int(opts, 'seqLen', 4, 4096));
  set('maxPrefix', int(opts, 'maxPrefix', 0, 4096));
  set('seed', int(opts, 'seed', 0, Number.MAX_SAFE_INTEGER));
  set('warmup', int(opts, 'warmup', 0, 1_000_000));
  set('accumulate', int(opts, 'accumulate', 1, 1024));
  set('windows', oneOf(opts, 'windows', ['aligned', 'random']));
  if (options.warmup === undefined) options.warmup = Math.max(1, Math.min(200, Math.floor(steps / 20)));
  if (options.lr === undefined) options.lr = mode === 'scratch' ? 2e-3 : 1e-4;
  if (opts.schedule !== undefined) {
    const m = /^steps:(\d+)$/.exec(String(opts.schedule));
    if (opts.schedule === 'continuous') options.schedule = { kind: 'continuous', eps: 0.05 };
    else if (m && Number(m[1]) > 0) options.schedule = { kind: 'steps', n: Number(m[1]) };
    else throw new OptionsError(`schedule must be 'continuous' or 'steps:N', got ${JSON.stringify(opts.schedule)}`);
  }
  const request = { mode, size: oneOf(opts, 'size', ['tiny', 'small']) ?? 'tiny', vocab: int(opts, 'vocab', 300, 65536) ?? 1024, options };
  if (opts.signal !== undefined && !(opts.signal && typeof opts.signal.aborted === 'boolean')) {
    throw new OptionsError('signal must be an AbortSignal');
  }
  if (opts.samplePrompt !== undefined && typeof opts.samplePrompt !== 'string') throw new OptionsError('samplePrompt must be a string');
  return {
    request,
    steps,
    evalEvery: int(opts, 'evalEvery', 0, 1_000_000) ?? 0,
    sampleEvery: int(opts, 'sampleEvery', 0, 1_000_000) ?? 0,
    samplePrompt: opts.samplePrompt,
    sampleLength: int(opts, 'sampleLength', 1, 512) ?? 24,
    adopt: opts.adopt ?? true,
    signal: opts.signal,
  };
}
