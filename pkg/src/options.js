// Options are defined once, in the Rust core (src/options.rs); the engine hands their specs
// over at load (`optionSpecs()`). Here they are checked against those specs synchronously, so a
// mistake is an OptionsError thrown by the call that made it, with the same message the core
// and the CLI give (tests/bad_inputs runs every case through both). The few options that only
// the package has (length, pins, signal, the training loop's settings) are checked here.
import { OptionsError } from './errors.js';

function describe(kind) {
  switch (kind.type) {
    case 'int': return `an integer in [${kind.min}, ${kind.max}]`;
    case 'real': {
      const hi = kind.max === null || kind.max === Infinity ? '∞)' : `${kind.max}${kind.maxOpen ? ')' : ']'}`;
      return `a number in ${kind.minOpen ? '(' : '['}${kind.min}, ${hi}`;
    }
    case 'choice': return `one of ${kind.choices.join(', ')}`;
    default: return kind.form;
  }
}

function accepts(kind, v) {
  switch (kind.type) {
    case 'int': return Number.isInteger(v) && v >= kind.min && v <= kind.max;
    case 'real': {
      if (typeof v !== 'number' || !Number.isFinite(v)) return false;
      const max = kind.max ?? Infinity;
      return (kind.minOpen ? v > kind.min : v >= kind.min) && (kind.maxOpen ? v < max : v <= max);
    }
    case 'choice': return kind.choices.includes(v);
    default: return typeof v === 'string';
  }
}

/** Checks `opts[name]` for every spec; returns the given ones. */
function fromSpecs(specs, opts, out = {}) {
  for (const s of specs) {
    const v = opts[s.name];
    if (v === undefined || (v === null && s.default === null)) continue;
    if (!accepts(s.kind, v)) throw new OptionsError(`${s.name} (${s.flag}) must be ${describe(s.kind)}, got ${JSON.stringify(v)}`);
    out[s.name] = v;
  }
  return out;
}

function refuseUnknown(opts, specs, extra, what) {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw new OptionsError(`${what} must be an object`);
  const names = [...specs.map((s) => s.name), ...extra];
  for (const k of Object.keys(opts)) {
    if (!names.includes(k)) throw new OptionsError(`unknown option \`${k}\` in ${what} (valid: ${names.join(', ')})`);
  }
}

function int(o, key, min, max) {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new OptionsError(`${key} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function signalOf(opts) {
  if (opts.signal !== undefined && !(opts.signal && typeof opts.signal.aborted === 'boolean')) {
    throw new OptionsError('signal must be an AbortSignal');
  }
  return opts.signal;
}

/** Splits generate() options into the engine's sampling options and the rest. */
export function samplingOptions(specs, opts = {}) {
  refuseUnknown(opts, specs.sampling, ['length', 'signal', 'pins', 'mask'], 'sampling options');
  const options = fromSpecs(specs.sampling, opts);
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
  if (opts.mask !== undefined && typeof opts.mask !== 'string') throw new OptionsError('mask must be a string (how masks read in a step\'s text)');
  return { options, length, pins, mask: opts.mask, signal: signalOf(opts) };
}

const LOOP_KEYS = ['mode', 'size', 'signal', 'adopt', 'sampleEvery', 'samplePrompt', 'sampleLength'];

/** Checks train() options; returns the engine request and the loop settings. */
export function trainOptions(specs, opts = {}) {
  refuseUnknown(opts, specs.training, LOOP_KEYS, 'training options');
  const mode = opts.mode ?? 'finetune';
  if (!['finetune', 'scratch'].includes(mode)) throw new OptionsError(`mode must be \`finetune\` or \`scratch\`, got ${JSON.stringify(mode)}`);
  if (opts.size !== undefined && typeof opts.size !== 'string') throw new OptionsError('size must be a string (tiny, small)');
  const options = fromSpecs(specs.training, opts);
  if (opts.samplePrompt !== undefined && typeof opts.samplePrompt !== 'string') throw new OptionsError('samplePrompt must be a string');
  if (opts.adopt !== undefined && typeof opts.adopt !== 'boolean') throw new OptionsError('adopt must be true or false');
  const request = { mode, options };
  if (opts.size !== undefined) request.size = opts.size;
  return {
    request,
    // The engine's option (evaluations also decide what `keep: 'best'` keeps); the loop runs them.
    evalEvery: options.evalEvery ?? defaults(specs.training).evalEvery,
    sampleEvery: int(opts, 'sampleEvery', 0, 1_000_000) ?? 0,
    samplePrompt: opts.samplePrompt,
    sampleLength: int(opts, 'sampleLength', 1, 512) ?? 24,
    adopt: opts.adopt ?? true,
    signal: signalOf(opts),
  };
}

/** The specs' defaults as an object: `{steps: 10, strategy: 'random', …}` (null: off/derived). */
export function defaults(specs) {
  return Object.fromEntries(specs.map((s) => [s.name, s.default]));
}
