// Typed errors: every failure the package reports is an UnmaskError subclass, so callers can
// branch with `instanceof` (or on `name`, which survives a Worker boundary).

export class UnmaskError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}
/** Options of the wrong type or out of range. */
export class OptionsError extends UnmaskError {}
/** A model file that is not a usable GGUF (truncated, corrupted, wrong architecture). */
export class ModelError extends UnmaskError {}
/** The tokenizer inside the model does not fit it. */
export class TokenizerError extends UnmaskError {}
/** The prompt or template does not fit (empty, too long, unparsable). */
export class InputError extends UnmaskError {}
/** A training run could not go on. */
export class TrainingError extends UnmaskError {}
/** The model could not be fetched (HTTP error, network failure). */
export class FetchError extends UnmaskError {}
/** The requested device is not available (e.g. `device: 'webgpu'` without WebGPU). */
export class DeviceError extends UnmaskError {}
/** The operation was aborted through its AbortSignal. */
export class AbortError extends UnmaskError {}
/** The instance was disposed (or made unusable by an internal fault). */
export class DisposedError extends UnmaskError {}
/** Another call holds the instance and `queue: false` was asked. */
export class BusyError extends UnmaskError {}
/** A fault inside the engine (a bug): the instance is no longer usable. */
export class InternalError extends UnmaskError {}

const byName = {
  OptionsError, ModelError, TokenizerError, InputError, TrainingError, FetchError, DeviceError,
  AbortError, DisposedError, BusyError, InternalError,
  IoError: ModelError, BackendError: InternalError,
};

/** Rebuilds a typed error from `{name, message}` (from Rust or from a Worker). */
export function toTypedError(e) {
  if (e instanceof UnmaskError) return e;
  const name = e && e.name;
  const message = (e && e.message) || String(e);
  if (name === 'RuntimeError' || (typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError)) {
    return new InternalError(`internal engine fault (${message}); the instance is no longer usable`);
  }
  const Cls = byName[name] || UnmaskError;
  return new Cls(message);
}
