export type Device = 'auto' | 'wasm' | 'webgpu';
export type Strategy = 'random' | 'confidence' | 'threshold' | 'margin' | 'entropy';
export type Schedule = 'linear' | 'cosine';

export interface Progress {
  phase: 'fetch' | 'cache' | 'compile' | 'ready';
  loaded: number;
  total: number;
}

export interface LoadOptions {
  device?: Device;
  /**
   * CPU threads: 'auto' (default; the machine's cores, at most 4) or 1–16. More than one needs
   * shared memory: Node, or a cross-origin isolated page (see `threadsReason`).
   */
  threads?: 'auto' | number;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** Keep fetched models in the Cache API (default true where available). */
  cache?: boolean;
  /** Run in a module Worker (default: true in browsers, false in Node). */
  worker?: boolean;
  workerUrl?: string | URL;
  /** The wasm binary, when it is not next to the package's glue code. */
  wasm?: Uint8Array | URL | string;
}

export interface ModelInfo {
  name: string;
  modelType: string;
  parameters: number;
  dtype: string;
  weightBytes: number;
  vocabSize: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  maxSequenceLen: number;
}

/** One option as the core defines it (`lm.options`). */
export interface OptionSpec {
  /** As the options object spells it. */
  name: string;
  /** The CLI's flag. */
  flag: string;
  help: string;
  kind:
    | { type: 'int'; min: number; max: number }
    | { type: 'real'; min: number; minOpen: boolean; max: number | null; maxOpen: boolean }
    | { type: 'choice'; choices: string[] }
    | { type: 'text'; form: string };
  /** null: off unless given, or derived (said in `help`). */
  default: number | string | null;
}

export interface OptionSpecs {
  sampling: OptionSpec[];
  training: OptionSpec[];
  /** The learning rate a run defaults to: from scratch, or fine-tuning by each `method`. */
  defaultLr: { scratch: number; lora: number; top: number; full: number };
  /** The layers a `lora` or `top` fine-tune trains when `layers` is not given (the top ones). */
  defaultLayers: number;
  /**
   * Named sampling settings, the defaults first, then the classic recipe (random, 10 steps):
   * every sampling option by name, `null` where it is off.
   */
  presets: { name: string; options: Record<string, number | string | null> }[];
  /** The training options the demo starts from (a one-minute budget; `null`: leave it out). */
  trainStart: Record<string, number | null>;
}

/**
 * The sampling options' names, ranges and defaults are in `lm.options.sampling` (and in
 * `unmask generate --help`): these types are checked against them by a test.
 */
export interface SamplingOptions {
  steps?: number;
  strategy?: Strategy;
  schedule?: Schedule;
  threshold?: number;
  blockLength?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  /**
   * Penalty for ids already on the canvas, prompt included (`transformers`' repetition_penalty:
   * their logits are divided by it, multiplied when negative). 1 is off; 1.2–1.5 (default 1.3)
   * keeps confidence decoding with a small model from repeating one phrase.
   */
  repetitionPenalty?: number;
  /**
   * Lowers tokens by how common they are anywhere (each logit less this times the token's
   * log-probability under the model's guess for a canvas of masks); 0 is off (0–4).
   */
  priorPenalty?: number;
  seed?: number;
  /** Top candidates reported per revealed token (0–64). */
  candidates?: number;
  /**
   * Committed tokens masked again per step in the middle half of the steps, the least
   * confident first, and drawn anew later (ReMDM-style remasking); 0 (the default) is off.
   */
  redraw?: number;
  /** How masks read in a step's `text` (default `[MASK]`). */
  mask?: string;
  signal?: AbortSignal;
}

export interface Pin {
  /** Index among the masked positions. */
  position: number;
  text: string;
}

export interface GenerateOptions extends SamplingOptions {
  length?: number;
  pins?: Pin[];
}

export interface InfillOptions extends SamplingOptions {
  pins?: Pin[];
}

export interface Candidate {
  id: number;
  piece: string;
  p: number;
}

export interface CanvasState {
  ids: Int32Array;
  fixed: boolean[];
  pieces: string[];
  /** The canvas for people: special tokens dropped, masks as the `mask` option says. */
  text: string;
  total: number;
  masked: number;
  /** The id of the mask token. */
  maskId: number;
}

export interface DenoiseStep {
  step: number;
  /** Steps planned: the `steps` option, or the tokens to fill when those are fewer. */
  total: number;
  ids: Int32Array;
  fixed: boolean[];
  pieces: string[];
  /** The canvas for people after this step: special tokens dropped, masks as `mask` says. */
  text: string;
  revealed: Int32Array;
  confidence: Float32Array;
  candidates: Candidate[][];
  /** Positions masked again after the reveals (the `redraw` option), drawn anew later. */
  redrawn: Int32Array;
  masked: number;
  ms: number;
  done: boolean;
}

export interface StepStream extends AsyncGenerator<DenoiseStep, void, undefined> {
  /** The starting canvas (prompt kept, masks to fill). */
  canvas: Promise<CanvasState>;
}

export class DiffusionLM {
  static load(source: string | URL | Uint8Array | ArrayBuffer | Blob, opts?: LoadOptions): Promise<DiffusionLM>;
  static cache: { clear(): Promise<void> };
  readonly device: 'wasm' | 'webgpu';
  readonly fallbackReason: string | null;
  /** With `device: 'auto'` where WebGPU runs: one generation step's milliseconds on each, timed while loading (the faster is `device`); otherwise null. */
  readonly deviceTimings: { webgpu: number; wasm: number } | null;
  /** The build of the core in use: relaxed SIMD (fused multiply-add) or threads where the engine has them. */
  readonly wasmFeatures: 'simd128' | 'simd128+relaxed' | 'simd128+threads' | 'simd128+relaxed+threads';
  /** Threads the CPU kernels run on. */
  readonly threads: number;
  /** Why `threads` is 1 or fewer than asked for (not cross-origin isolated, …), or null. */
  readonly threadsReason: string | null;
  readonly info: ModelInfo;
  /** Every option, from its one definition in the core: names, help, ranges, defaults. */
  readonly options: OptionSpecs;
  generate(prompt: string, opts?: GenerateOptions): StepStream;
  infill(template: string, opts?: InfillOptions): StepStream;
  edit(canvas: { ids: ArrayLike<number>; fixed: ArrayLike<boolean> }, positions: ArrayLike<number>, opts?: SamplingOptions): StepStream;
  generateText(prompt: string, opts?: GenerateOptions): Promise<string>;
  render(ids: ArrayLike<number>, mask?: string): Promise<string>;
  /** MLM logits at `positions` (default: all) of one sequence: `positions.length × vocabSize`, row-major. */
  logits(ids: ArrayLike<number>, positions?: ArrayLike<number>): Promise<Float32Array>;
  export(dtype?: 'f32' | 'f16' | 'q8_0' | 'q4_k' | 'safetensors'): Promise<Uint8Array>;
  /** The last LoRA fine-tune's adapters as a small GGUF (an `OptionsError` when there are none). */
  exportAdapters(): Promise<Uint8Array>;
  /** Merges adapters from `exportAdapters` into this model (a `ModelError` unless trained on it). */
  loadAdapters(source: string | URL | Uint8Array | ArrayBuffer | Blob, opts?: { signal?: AbortSignal }): Promise<ModelInfo>;
  /** Bytes of the engine's wasm memory (the high-water mark: wasm memory never shrinks). */
  memoryBytes(): Promise<number>;
  dispose(): Promise<void>;
}

export class UnmaskError extends Error {}
export class OptionsError extends UnmaskError {}
export class ModelError extends UnmaskError {}
export class TokenizerError extends UnmaskError {}
export class InputError extends UnmaskError {}
export class TrainingError extends UnmaskError {}
export class FetchError extends UnmaskError {}
export class DeviceError extends UnmaskError {}
export class AbortError extends UnmaskError {}
export class DisposedError extends UnmaskError {}
export class BusyError extends UnmaskError {}
export class InternalError extends UnmaskError {}

/**
 * The training options' names, ranges and defaults are in `lm.options.training` (and in
 * `unmask train --help`): these types are checked against them by a test.
 */
export interface TrainOptions {
  mode?: 'finetune' | 'scratch';
  size?: 'tiny' | 'small';
  /** Tokenizer vocabulary for `scratch`. */
  vocab?: number;
  steps?: number;
  /** A time budget: the run ends after this many seconds or at `steps`, whichever comes first; the learning rate decays over whichever ends the run. */
  seconds?: number;
  /** What a fine-tune trains: LoRA adapters (default), the top `layers` layers whole, or every weight. */
  method?: 'lora' | 'top' | 'full';
  /** Rank of the LoRA adapters. */
  rank?: number;
  /** Layers trained by `lora` or `top`, counted from the top; default the top 2. */
  layers?: number;
  /** Default: the mode's and method's (`lm.options.defaultLr`). */
  lr?: number;
  batchSize?: number;
  seqLen?: number;
  schedule?: 'continuous' | `continuous:${number}` | `steps:${number}`;
  maxPrefix?: number;
  /** Default: 5 % of `steps`, 1 to 200 (10 for `seconds` given without `steps`). */
  warmup?: number;
  decay?: 'cosine' | 'linear' | 'constant';
  minLrRatio?: number;
  weightDecay?: number;
  clip?: number;
  accumulate?: number;
  /** Where training windows start: consecutive chunks (default; memorises small texts fast) or random offsets. */
  windows?: 'aligned' | 'random';
  seed?: number;
  validFraction?: number;
  evalSequences?: number;
  /** Which weights the run ends with: its best evaluated ones (default for a fine-tune) or the last step's (default from scratch). */
  keep?: 'best' | 'last';
  /** Adds an `eval` every this many steps (and at the last); `keep: 'best'` chooses among them. 0: none. */
  evalEvery?: number;
  /** Adds a `sample` of the current weights every this many steps (and at the last). */
  sampleEvery?: number;
  /** What samples continue; default: the first words of the first training document (`start.samplePrompt`). */
  samplePrompt?: string;
  sampleLength?: number;
  /** Generate with the trained weights once the run ends (default true). */
  adopt?: boolean;
  signal?: AbortSignal;
}

export interface TrainStep {
  step: number;
  steps: number;
  loss: number;
  objective: number;
  lr: number;
  gradNorm: number;
  ms: number;
  tokensPerSec: number;
  eval?: Evaluation;
  sample?: string;
}

/** ELBO perplexity of a run's weights, on held-out text where the corpus has some. */
export interface Evaluation {
  elboPerplexity: number;
  loss: number;
  heldOut: boolean;
  tokens: number;
}

export interface TrainStream extends AsyncIterableIterator<TrainStep> {
  /** `eval`: the loaded model's evaluation, when the run keeps its best weights (`keep: 'best'`). */
  start: Promise<{ parameters: number; documents: number; trainTokens: number; validTokens: number; heldOut: boolean; estimatedBytes: number; steps: number; seconds: number | null; samplePrompt: string; eval: Evaluation | null }>;
  /** Text for `samplePrompt` from the weights as they are now (the loaded model's before the first step), drawn as the run's samples are. */
  sample(): Promise<string>;
  /** Evaluates the weights as they are now; under `keep: 'best'` the run remembers them if they are its best so far. */
  evaluate(): Promise<Evaluation>;
  /** Once the run has ended and handed its weights over: the step they are from (0: the loaded model's) and their figure (`null` under `keep: 'last'`). */
  kept: { step: number; elboPerplexity: number | null } | null;
}

export interface DiffusionLM {
  train(corpus: string, opts?: TrainOptions): TrainStream;
}
