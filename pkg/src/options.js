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
  'seed', 'candidates', 'signal', 'pins',
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
