//! The trainer: fine-tune a model or train one from scratch with the diffusion objective.
//! Single-threaded and file-free at its core so the browser can drive it step by step;
//! checkpoints to disk are a native extra.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::corpus::{window, Corpus};
use super::finetune::{self, Frozen, Method};
use super::objective::{loss_terms, mask_batch, MaskSchedule};
use super::sampler::SampleOptions;
use crate::rng::Rng;
use crate::error::{Error, Result};
use crate::options::{ge, gt, le, lt, Kind, OptionSet, MAX_SAFE_INTEGER};
use crate::{choice_enum, options};
use crate::model::weights::Stored;
use crate::model::{init, Encoder, Model, ModelConfig, TextCodec, WeightStore};

choice_enum! {
    /// How the learning rate falls after the warm-up.
    pub enum Decay {
        Cosine = "cosine",
        Linear = "linear",
        Constant = "constant",
    }
}

choice_enum! {
    /// Where training windows start in the token stream.
    pub enum Windows {
        /// Consecutive chunks of `seqLen - 2` tokens (the usual packing). A token keeps its
        /// position in every epoch, so a model can learn text from absolute positions alone: a tiny
        /// model memorises a paragraph within a few hundred steps (measured in PyTorch on the
        /// sample corpus: 5.3 → 0.9 nats in 650 steps, where random offsets stay at the unigram
        /// plateau of ≈ 5.2 nats for 1,100+ steps).
        Aligned = "aligned",
        /// Any offset: more variety from a small corpus, but the model must first learn relative
        /// attention from absolute positions, which is the slow part (the plateau).
        Random = "random",
    }
}

choice_enum! {
    /// Which weights a run ends with.
    pub enum Keep {
        /// Those of the run's evaluation with the lowest ELBO perplexity (early stopping).
        Best = "best",
        /// Those of the last step.
        Last = "last",
    }
}

/// The learning rate when none is given: fine-tuning whole weights keeps close to the loaded
/// ones, adapters start at zero and need a larger one, a fresh tiny model a large one to learn
/// within the demo's minute.
pub const FINETUNE_LR: f64 = 1e-4;
pub const LORA_LR: f64 = 1e-3;
pub const SCRATCH_LR: f64 = 2e-3;

/// Steps and warm-up of a run given only a time budget ([`TrainOptions::budgeted`]). The
/// warm-up is short because a fine-tune's step takes about a second in the tab: a minute's
/// budget is ~50 of them.
pub const BUDGET_STEPS: usize = 100_000;
pub const BUDGET_WARMUP: usize = 10;

/// The demo's time budget ([`TrainOptions::demo_start`]).
const DEMO_SECONDS: f64 = 60.0;

/// The learning rate a run gets when none is given.
pub fn default_lr(scratch: bool, method: Method) -> f64 {
    match method {
        _ if scratch => SCRATCH_LR,
        Method::Lora => LORA_LR,
        Method::Top | Method::Full => FINETUNE_LR,
    }
}

options! {
    /// How a training run goes: the one definition of these options (the CLI's `train` flags,
    /// the package's `train()` options and the demo derive from it).
    pub struct TrainOptions {
        /// Tokens per training window, the start and end tokens included.
        seq_len: usize = 64, Kind::int(4, 4096);
        /// Windows per micro-batch.
        batch_size: usize = 16, Kind::int(1, 4096);
        /// What a fine-tune trains: lora (low-rank adapters on the top `layers` layers' linears),
        /// top (those layers and the head whole) or full (every weight). A model from scratch
        /// trains every weight.
        method: Method = Method::Lora, Kind::choice(Method::NAMES);
        /// Rank of the LoRA adapters (at most the model's hidden width).
        rank: usize = 8, Kind::int(1, 4096);
        /// Layers trained by lora or top, counted from the top (at most the model's layer
        /// count); by default the top 2 (every layer of a smaller model).
        layers: Option<usize> = None, Kind::int(1, 4096);
        /// Peak learning rate; by default the method's: 1e-3 lora, 1e-4 top or full fine-tuning,
        /// 2e-3 from scratch.
        lr: Option<f64> = None, Kind::real(gt(0.0), lt(1.0));
        /// Steps of linear learning-rate warm-up; by default 5 % of steps, 1 to 200 (10 for a time
        /// budget given without steps).
        warmup: Option<usize> = None, Kind::int(0, 1_000_000);
        /// Optimizer steps; the learning-rate schedule spans them (or `seconds`, whichever ends
        /// the run first).
        steps: usize = 200, Kind::int(1, 100_000_000);
        /// A time budget: the run ends after this many seconds of training, or at `steps`,
        /// whichever comes first; the learning rate decays over whichever ends the run.
        seconds: Option<f64> = None, Kind::real(gt(0.0), le(f64::INFINITY));
        /// How the learning rate falls after the warm-up.
        decay: Decay = Decay::Cosine, Kind::choice(Decay::NAMES);
        /// The learning rate decays to lr × minLrRatio.
        min_lr_ratio: f64 = 0.1, Kind::real(ge(0.0), le(1.0));
        /// AdamW's decoupled weight decay (matrices only).
        weight_decay: f64 = 0.01, Kind::real(ge(0.0), lt(1.0));
        /// Global gradient-norm clip (0 = off).
        clip: f64 = 1.0, Kind::real(ge(0.0), le(f64::INFINITY));
        /// Micro-batches per optimizer step (a larger effective batch in the same memory).
        accumulate: usize = 1, Kind::int(1, 1024);
        /// Mask rates trained on: continuous (t ~ U(ε, 1), the 1/t-weighted ELBO) or steps:N
        /// (t in {1/N, …, 1}, the rates an N-step generation visits).
        schedule: MaskSchedule = MaskSchedule::DEFAULT, Kind::text(MaskSchedule::FORM);
        /// Longest kept prefix; each window keeps 0..=maxPrefix tokens unmasked, as a prompt.
        max_prefix: usize = 16, Kind::int(0, 4096);
        /// Where windows start: aligned (consecutive chunks: small texts are learnt fast) or
        /// random offsets.
        windows: Windows = Windows::Aligned, Kind::choice(Windows::NAMES);
        /// Seed of the initial weights, the windows and the masks.
        seed: u64 = 0, Kind::int(0, MAX_SAFE_INTEGER);
        /// Share of documents held out for evaluation (0: evaluate on the training text).
        valid_fraction: f64 = 0.1, Kind::real(ge(0.0), lt(1.0));
        /// Validation windows scored by an evaluation (at most as many as the held-out text fills).
        eval_sequences: usize = 16, Kind::int(1, 100_000);
        /// Evaluate every this many steps (the CLI also saves a checkpoint then); `keep: best`
        /// chooses among these evaluations, the loaded model's and the last step's. 0: only
        /// those two.
        eval_every: usize = 100, Kind::int(0, 100_000_000);
        /// Vocabulary of the tokenizer trained on the corpus for a model from scratch.
        vocab: usize = 512, Kind::int(300, 65_536);
        /// Which weights the run ends with, finished or stopped: best (those of its evaluation
        /// with the lowest ELBO perplexity, held-out where the corpus has a held-out part; the
        /// loaded model and the last step are evaluated too) or last. By default best for a
        /// fine-tune (a small corpus is soon learnt by heart, and held-out text then reads
        /// worse) and last for a model from scratch (learning its corpus by heart is its
        /// purpose).
        keep: Option<Keep> = None, Kind::choice(Keep::NAMES);
    }
}

impl TrainOptions {
    /// Checks the options against a model with a context of `max_len` tokens.
    pub fn validate(&self, max_len: usize) -> Result<()> {
        self.check()?;
        if self.seq_len > max_len {
            return Err(Error::options(format!("seqLen must be in [4, {max_len}] for this model, got {}", self.seq_len)));
        }
        Ok(())
    }

    /// A time budget given without `steps`: the run is for [`BUDGET_STEPS`] (with
    /// [`BUDGET_WARMUP`] steps of warm-up unless `warmup` is given), so the time ends it and
    /// the learning rate decays over the time ([`Self::lr_at`]).
    pub fn budgeted(mut self, given_steps: bool) -> Self {
        if self.seconds.is_some() && !given_steps {
            self.steps = BUDGET_STEPS;
            self.warmup.get_or_insert(BUDGET_WARMUP);
        }
        self
    }

    /// What the demo's training fields start at: a one-minute time budget and no step count,
    /// so that something visible happens while the user watches (on two cores a minute takes
    /// a tiny model from scratch to the sample corpus's own words, and a LoRA fine-tune ~50
    /// steps; `bench/RESULTS.md`).
    pub fn demo_start() -> serde_json::Value {
        serde_json::json!({ "steps": null, "seconds": DEMO_SECONDS })
    }

    /// The learning rate and warm-up filled in where they were left to the mode and method.
    pub fn resolved(mut self, scratch: bool) -> Self {
        if scratch {
            self.method = Method::Full;
        }
        self.lr.get_or_insert(default_lr(scratch, self.method));
        self.keep.get_or_insert(if scratch { Keep::Last } else { Keep::Best });
        self.warmup.get_or_insert((self.steps / 20).clamp(1, 200));
        self
    }

    fn peak_lr(&self) -> f64 {
        self.lr.unwrap_or(FINETUNE_LR)
    }

    /// The learning rate of step `step` (0-based) after `elapsed` seconds of training: a linear
    /// warm-up over `warmup` steps, then the decay over what is left of the steps or of the
    /// time budget, whichever is further spent, so a run that ends on time ends at the floor.
    pub fn lr_at(&self, step: usize, elapsed: f64) -> f64 {
        let (lr, warmup) = (self.peak_lr(), self.warmup.unwrap_or(0));
        if step < warmup {
            return lr * (step + 1) as f64 / warmup as f64;
        }
        let span = self.steps.saturating_sub(warmup).max(1) as f64;
        let by_steps = (step - warmup) as f64 / span;
        let by_time = self.seconds.map_or(0.0, |s| elapsed / s);
        let x = by_steps.max(by_time).min(1.0);
        let floor = lr * self.min_lr_ratio;
        match self.decay {
            Decay::Constant => lr,
            Decay::Linear => floor + (lr - floor) * (1.0 - x),
            Decay::Cosine => floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub step: usize,
    /// Mean cross-entropy over masked tokens (nats).
    pub loss: f32,
    /// The objective as optimised (1/t-weighted per maskable token for the continuous schedule).
    pub objective: f32,
    pub lr: f64,
    pub grad_norm: f32,
    /// Tokens in this step's windows.
    pub tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    /// exp of the 1/t-weighted masked cross-entropy per token, averaged over t ∈ {0.1, …, 1.0}.
    pub elbo_perplexity: f32,
    /// Mean masked cross-entropy over the same masks.
    pub loss: f32,
    pub held_out: bool,
    pub tokens: usize,
}

/// The weights a run ends with ([`Trainer::keep`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// The step whose weights they are (0: the loaded model's).
    pub step: usize,
    /// Their evaluation's figure (`None` under `keep: last`).
    pub elbo_perplexity: Option<f32>,
}

/// The weights of a run's best evaluation so far (`keep: best`).
struct Best {
    step: usize,
    elbo_perplexity: f32,
    /// The trained tensors, in `Trainer::vars`' order (the adapters alone for LoRA).
    weights: Vec<Tensor>,
}

/// What a resumed run needs besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainerState {
    pub step: usize,
    pub tokens: u64,
    pub options: TrainOptions,
    /// Where the windows' and masks' random stream stood: a resumed run draws the batches the
    /// run would have drawn next. Absent in checkpoints written before it was kept.
    #[serde(default)]
    pub rng: Option<u64>,
}

pub struct Trainer {
    pub config: ModelConfig,
    pub codec: TextCodec,
    encoder: Encoder,
    vars: Vec<(String, Var)>,
    adam: AdamW,
    corpus: Corpus,
    pub options: TrainOptions,
    pub step: usize,
    pub tokens: u64,
    /// Seconds this run has trained ([`Self::set_elapsed`]).
    elapsed: f64,
    rng: Rng,
    name: String,
    /// A `lora` or `top` fine-tune's frozen part; `None` when every weight trains.
    frozen: Option<Frozen>,
    /// A fresh model with its own tokenizer (`from_scratch`).
    scratch: bool,
    /// Under `keep: best`, the best evaluation's weights so far.
    best: Option<Best>,
    /// The step of the last evaluation [`Self::evaluate_and_track`] made.
    evaluated: Option<usize>,
}

/// Bytes a wasm instance may use for training: its address space is 4 GiB, and the model,
/// the page's buffers and allocator slack need the rest. Natively there is no fixed bound.
const WASM_TRAIN_BUDGET: u64 = 3 << 30;

/// A rough upper estimate of a run's memory: f32 weights, plus gradients and two Adam moments
/// for the trained ones, the activations kept for the backward pass by the trained layers (per
/// layer: ~14 hidden-wide and 4 FFN-wide values per token plus 3 attention maps), and logits
/// with their softmax and gradient.
pub fn estimate_bytes(config: &ModelConfig, o: &TrainOptions) -> u64 {
    let (h, i, l, v) = (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size);
    let params = config.parameter_count() as u64;
    let (trained_layers, trained) = match o.method {
        Method::Full => (l, params),
        method => {
            let n = finetune::trained_layers(o, l);
            let per_layer = (4 * h * h + 2 * h * i) as u64;
            let adapters = (4 * (2 * h) + 2 * (h + i)) as u64 * o.rank as u64;
            (n, n as u64 * if method == Method::Lora { adapters } else { per_layer } + (h * h) as u64)
        }
    };
    let tokens = (o.batch_size as u64).saturating_mul(o.seq_len as u64);
    let per_token = (trained_layers as u64).saturating_mul((14 * h + 4 * i + 3 * config.num_attention_heads * o.seq_len) as u64);
    let activations = tokens.saturating_mul(per_token.saturating_add(3 * v as u64)).saturating_mul(4);
    params.saturating_mul(4).saturating_add(trained.saturating_mul(12)).saturating_add(activations)
}

fn check_memory(config: &ModelConfig, o: &TrainOptions) -> Result<()> {
    let need = estimate_bytes(config, o);
    if cfg!(target_arch = "wasm32") && need > WASM_TRAIN_BUDGET {
        return Err(Error::options(format!(
            "this run needs about {} MiB (weights, gradients, Adam state and activations for batchSize {} × seqLen {}), \
             more than the {} MiB a wasm instance can give it: use a smaller batchSize or seqLen (accumulate keeps the \
             effective batch)",
            need >> 20,
            o.batch_size,
            o.seq_len,
            WASM_TRAIN_BUDGET >> 20
        )));
    }
    Ok(())
}

impl Trainer {
    /// Fine-tunes `model` as `options.method` says (by default LoRA adapters; quantized
    /// weights that train whole are dequantized to f32 first).
    pub fn new(model: &Model, docs: &[String], options: TrainOptions) -> Result<Self> {
        let options = options.resolved(false);
        options.validate(model.config().max_sequence_len())?;
        finetune::check(model.config(), &options)?;
        check_memory(model.config(), &options)?;
        if options.method == Method::Full {
            let tensors = model.store.to_dense()?;
            return Self::from_tensors(&model.name, model.config().clone(), model.codec.clone(), tensors, docs, options);
        }
        let (encoder, vars, frozen) = finetune::prepare(model, &options)?;
        Self::assemble(&model.name, model.codec.clone(), encoder, vars, Some(frozen), docs, options)
    }

    /// A fresh model of a named size (`tiny`, `small`) with `codec`'s vocabulary.
    pub fn from_scratch(size: &str, codec: TextCodec, docs: &[String], options: TrainOptions) -> Result<Self> {
        let mut config = ModelConfig::named(size, codec.vocab_size)?;
        config.pad_token_id = codec.pad_id;
        config.bos_token_id = Some(codec.bos_id);
        config.eos_token_id = Some(codec.eos_id);
        let options = options.resolved(true);
        options.validate(config.max_sequence_len())?;
        check_memory(&config, &options)?;
        let tensors: HashMap<String, Tensor> = init::fresh_tensors(&config, options.seed, 0.02)?.into_iter().collect();
        let mut t = Self::from_tensors(&format!("unmask-{size}"), config, codec, tensors, docs, options)?;
        t.scratch = true;
        Ok(t)
    }

    /// Every tensor trains (options already checked against the model).
    fn from_tensors(
        name: &str,
        config: ModelConfig,
        codec: TextCodec,
        tensors: HashMap<String, Tensor>,
        docs: &[String],
        options: TrainOptions,
    ) -> Result<Self> {
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut vars = Vec::with_capacity(names.len());
        let mut store = WeightStore::default();
        for n in names {
            let v = Var::from_tensor(&tensors[n])?;
            store.insert(n.clone(), Stored::Dense(v.as_tensor().clone()));
            vars.push((n.clone(), v));
        }
        let encoder = Encoder::load(&config, &store)?;
        Self::assemble(name, codec, encoder, vars, None, docs, options)
    }

    fn assemble(
        name: &str,
        codec: TextCodec,
        encoder: Encoder,
        vars: Vec<(String, Var)>,
        frozen: Option<Frozen>,
        docs: &[String],
        options: TrainOptions,
    ) -> Result<Self> {
        let config = encoder.config.clone();
        let corpus = Corpus::build(&codec, docs, options.valid_fraction, options.seed, options.seq_len)?;
        // Tensors the encoder does not use (a checkpoint's pooler) get no gradient and are
        // left as they are.
        let adam = AdamW::new(&vars, options.weight_decay)?;
        Ok(Self {
            config,
            codec,
            encoder,
            vars,
            adam,
            corpus,
            rng: Rng::new(options.seed ^ 0x7a11),
            options,
            step: 0,
            tokens: 0,
            elapsed: 0.0,
            name: name.to_string(),
            frozen,
            scratch: false,
            best: None,
            evaluated: None,
        })
    }

    /// The lowest layer that trains.
    fn from_layer(&self) -> usize {
        self.frozen.as_ref().map_or(0, |f| f.from)
    }

    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    pub fn parameter_count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.as_tensor().elem_count()).sum()
    }

    fn batch(&mut self) -> Vec<Vec<u32>> {
        let (seq, n) = (self.options.seq_len, self.corpus.train.len());
        let body = seq - 2;
        (0..self.options.batch_size).map(|_| {
            let start = match self.options.windows {
                Windows::Aligned => self.rng.below(n.div_ceil(body)) * body,
                Windows::Random => self.rng.below(n),
            };
            window(&self.codec, &self.corpus.train, start, seq)
        }).collect()
    }

    /// One optimizer step (over `accumulate` micro-batches).
    pub fn step(&mut self) -> Result<StepReport> {
        crate::backend::par::run(|| self.step_here())
    }

    /// How the samples shown during a run are drawn: the defaults with seed 0, so every sample
    /// of a run (and the loaded model's, before it) is comparable. A model from scratch gets no
    /// repetition or prior penalty: learning its corpus it repeats the corpus's own
    /// small-vocabulary pieces, and the penalties, measured for the default model's 16k
    /// vocabulary, scramble them (memorised "how long precisely" came out as "how andong
    /// precisely").
    pub fn sample_options(&self) -> SampleOptions {
        let d = SampleOptions::DEFAULT;
        let (repetition_penalty, prior_penalty) = if self.scratch { (1.0, 0.0) } else { (d.repetition_penalty, d.prior_penalty) };
        SampleOptions { seed: 0, repetition_penalty, prior_penalty, ..d }
    }

    /// Tells the trainer how many seconds this run has trained so far, for a time budget's
    /// learning-rate decay (the driver owns the clock: wasm has no `Instant`).
    pub fn set_elapsed(&mut self, seconds: f64) {
        self.elapsed = seconds;
    }

    fn step_here(&mut self) -> Result<StepReport> {
        let lr = self.options.lr_at(self.step, self.elapsed);
        let mut grads: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let (mut ce_sum, mut obj_sum, mut masked, mut maskable, mut tokens) = (0f32, 0f32, 0usize, 0usize, 0usize);
        for _ in 0..self.options.accumulate {
            let seqs = self.batch();
            let b = mask_batch(&seqs, self.codec.mask_id, self.options.schedule, self.options.max_prefix, None, &mut self.rng);
            let (weighted, plain, n) = loss_terms(&self.encoder, &b, self.from_layer())?;
            // Normalise by the maskable tokens of the whole accumulated step.
            let scale = 1.0 / (b.maskable * self.options.accumulate) as f64;
            let g = (weighted.clone() * scale)?.backward()?;
            for (i, (_, v)) in self.vars.iter().enumerate() {
                if let Some(gi) = g.get(v.as_tensor()) {
                    grads[i] = Some(match grads[i].take() {
                        Some(acc) => (acc + gi)?,
                        None => gi.clone(),
                    });
                }
            }
            ce_sum += plain.to_scalar::<f32>()?;
            obj_sum += weighted.to_scalar::<f32>()?;
            masked += n;
            maskable += b.maskable;
            tokens += b.batch * b.seq;
        }
        let loss = ce_sum / masked as f32;
        let objective = obj_sum / maskable as f32;
        let mut sq = 0f32;
        for g in grads.iter().flatten() {
            sq += super::adamw::sum_of_squares(g)?;
        }
        let grad_norm = sq.sqrt();
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(Error::Training(format!(
                "the loss became {} at step {}: training stopped, weights unchanged (lower the learning rate, now {lr:.2e})",
                if loss.is_finite() { "finite but the gradients did not" } else { "NaN/inf" },
                self.step + 1
            )));
        }
        let clip = self.options.clip;
        let scale = if clip > 0.0 && grad_norm as f64 > clip { clip / grad_norm as f64 } else { 1.0 };
        self.adam.update(&self.vars, &grads, lr, scale)?;
        self.step += 1;
        self.tokens += tokens as u64;
        Ok(StepReport { step: self.step, loss, objective, lr, grad_norm, tokens })
    }

    /// Gradient norm of every trained tensor on one fresh batch, without updating anything
    /// (tests use it to prove every parameter learns; candle drops gradients silently
    /// through some fused ops).
    pub fn gradient_norms(&mut self) -> Result<Vec<(String, f32)>> {
        let seqs = self.batch();
        let b = mask_batch(&seqs, self.codec.mask_id, self.options.schedule, self.options.max_prefix, None, &mut self.rng);
        let (weighted, _, _) = loss_terms(&self.encoder, &b, self.from_layer())?;
        let g = (weighted / b.maskable as f64)?.backward()?;
        self.vars
            .iter()
            .map(|(n, v)| {
                let norm = match g.get(v.as_tensor()) {
                    Some(t) => t.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt(),
                    None => 0.0,
                };
                Ok((n.clone(), norm))
            })
            .collect()
    }

    /// Held-out ELBO perplexity: fixed windows and masks (same every call), t ∈ {0.1, …, 1.0},
    /// no kept prefix.
    pub fn evaluate(&self) -> Result<EvalReport> {
        let seq = self.options.seq_len;
        let stream = &self.corpus.valid;
        // No more windows than the text fills: more would score the same tokens again at ten
        // forwards a window (the sample corpus holds out 247 tokens, four windows of 64).
        let n = self.options.eval_sequences.min(stream.len().div_ceil(seq - 2)).max(1);
        // Windows start where training windows start: chunk boundaries for aligned training
        // (a model trained on aligned chunks knows text by position), spread evenly otherwise.
        let stride = match self.options.windows {
            Windows::Aligned => (stream.len() / n / (seq - 2)).max(1) * (seq - 2),
            Windows::Random => (stream.len() / n).max(1),
        };
        let seqs: Vec<Vec<u32>> = (0..n).map(|k| window(&self.codec, stream, k * stride, seq)).collect();
        let mut rng = Rng::new(0xe7a1);
        let (mut elbo, mut ce, mut masked) = (0f64, 0f64, 0usize);
        let schedule = MaskSchedule::Continuous { eps: 0.05 };
        let grid = 10;
        for k in 1..=grid {
            let t = k as f32 / grid as f32;
            let b = mask_batch(&seqs, self.codec.mask_id, schedule, 0, Some(t), &mut rng);
            let (w, plain, m) = loss_terms(&self.encoder, &b, self.from_layer())?;
            elbo += w.to_scalar::<f32>()? as f64 / b.maskable as f64;
            ce += plain.to_scalar::<f32>()? as f64;
            masked += m;
        }
        let elbo = elbo / grid as f64;
        Ok(EvalReport {
            elbo_perplexity: elbo.exp() as f32,
            loss: (ce / masked as f64) as f32,
            held_out: self.corpus.held_out,
            tokens: seqs.len() * seq,
        })
    }

    /// [`Self::evaluate`] on the thread pool, remembered: under `keep: best` the weights are
    /// set aside when they score lower than every earlier evaluation of the run.
    pub fn evaluate_and_track(&mut self) -> Result<EvalReport> {
        let e = crate::backend::par::run(|| self.evaluate())?;
        self.evaluated = Some(self.step);
        let better = self.best.as_ref().is_none_or(|b| e.elbo_perplexity < b.elbo_perplexity);
        if self.options.keep == Some(Keep::Best) && better {
            let weights = self.vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?;
            self.best = Some(Best { step: self.step, elbo_perplexity: e.elbo_perplexity, weights });
        }
        Ok(e)
    }

    /// Ends the run on the weights `keep` asks for. Under `best` the current weights are
    /// evaluated unless they just were, and the best evaluation's weights replace them.
    pub fn keep(&mut self) -> Result<Kept> {
        if self.options.keep != Some(Keep::Best) {
            return Ok(Kept { step: self.step, elbo_perplexity: None });
        }
        if self.evaluated != Some(self.step) {
            self.evaluate_and_track()?;
        }
        let best = self.best.as_ref().expect("an evaluation was just tracked");
        if best.step != self.step {
            for ((_, v), w) in self.vars.iter().zip(&best.weights) {
                v.set(w)?;
            }
        }
        Ok(Kept { step: best.step, elbo_perplexity: Some(best.elbo_perplexity) })
    }

    /// Current weights as f32 tensors in the Hugging Face layout (adapters merged in).
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        match &self.frozen {
            Some(f) => f.tensors(&self.encoder, &self.vars),
            None => self.vars.iter().map(|(n, v)| Ok((n.clone(), v.as_detached_tensor().copy()?))).collect(),
        }
    }

    /// An inference model from the current weights (independent of further training). A
    /// partial fine-tune keeps each weight in the loaded model's storage type.
    pub fn snapshot(&self) -> Result<Model> {
        let store = match &self.frozen {
            Some(f) => f.store(&self.encoder, &self.vars)?,
            None => {
                let mut store = WeightStore::default();
                for (n, t) in self.tensors()? {
                    store.insert(n, Stored::Dense(t));
                }
                store
            }
        };
        Model::from_parts(&self.name, self.config.clone(), store, self.codec.json())
    }

    /// The LoRA adapters as they are now, to save apart from the base model (`None` for
    /// another method).
    pub fn adapters(&self) -> Result<Option<crate::model::adapters::Adapters>> {
        match &self.frozen {
            Some(f) => f.adapters(&self.encoder, &self.name),
            None => Ok(None),
        }
    }

    /// `model.safetensors` bytes (Hugging Face layout; the decoder is tied, not stored).
    pub fn safetensors_bytes(&self) -> Result<Vec<u8>> {
        crate::model::weights::serialize(&self.tensors()?)
    }

    pub fn state(&self) -> TrainerState {
        TrainerState { step: self.step, tokens: self.tokens, options: self.options.clone(), rng: Some(self.rng.state()) }
    }

    /// Optimizer moments as a safetensors buffer.
    #[cfg(not(target_arch = "wasm32"))]
    fn optimizer_bytes(&self) -> Result<Vec<u8>> {
        let mut named = Vec::new();
        for (i, (n, var)) in self.vars.iter().enumerate() {
            let moment = |x: &[f32]| Tensor::from_slice(x, var.shape(), var.device());
            named.push((format!("m.{n}"), moment(&self.adam.m[i])?));
            named.push((format!("v.{n}"), moment(&self.adam.v[i])?));
        }
        crate::model::weights::serialize(&named)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn restore(&mut self, state: TrainerState, optimizer: &[u8]) -> Result<()> {
        let opt = candle_core::safetensors::load_buffer(optimizer, &candle_core::Device::Cpu)
            .map_err(|e| Error::Training(format!("optimizer state unreadable: {e}")))?;
        // A checkpoint holds LoRA's adapters merged into the weights: the resumed run starts
        // fresh adapters (B = 0) on top, and the old adapters' moments do not belong to them.
        let fresh = self.options.method == Method::Lora;
        for (i, (n, v)) in self.vars.iter().enumerate().filter(|_| !fresh) {
            let (m, vv) = (opt.get(&format!("m.{n}")), opt.get(&format!("v.{n}")));
            match (m, vv) {
                (Some(m), Some(vv)) if m.dims() == v.as_tensor().dims() => {
                    self.adam.m[i] = m.flatten_all()?.to_vec1::<f32>()?;
                    self.adam.v[i] = vv.flatten_all()?.to_vec1::<f32>()?;
                }
                _ => return Err(Error::Training(format!("optimizer state lacks `{n}`"))),
            }
        }
        self.adam.t = state.step;
        self.step = state.step;
        self.tokens = state.tokens;
        self.rng = match state.rng {
            Some(at) => Rng::resume(at),
            // An older checkpoint: at least not the batches the first leg began with.
            None => Rng::new(self.options.seed ^ 0x7a11 ^ (state.step as u64).wrapping_mul(0x9e37_79b9)),
        };
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod checkpoint {
    use std::path::{Path, PathBuf};

    use super::*;

    fn sibling(dir: &Path, suffix: &str) -> PathBuf {
        let mut s = dir.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    }

    impl Trainer {
        /// Writes a Hugging Face folder (`config.json`, `model.safetensors`, `tokenizer.json`)
        /// plus `trainer.json` and `optimizer.safetensors`. Atomic: the folder is written
        /// beside the target and swapped in, so an interrupted write leaves the previous
        /// checkpoint loadable (at `dir`, or at `dir.old` mid-swap).
        pub fn save(&self, dir: &Path) -> Result<()> {
            let tmp = sibling(dir, ".partial");
            let old = sibling(dir, ".old");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
            let mut cfg = self.config.clone();
            cfg.architectures = vec![cfg.family()?.mlm_architecture().to_string()];
            std::fs::write(tmp.join("config.json"), cfg.to_json())?;
            std::fs::write(tmp.join("tokenizer.json"), self.codec.json())?;
            std::fs::write(tmp.join("model.safetensors"), self.safetensors_bytes()?)?;
            std::fs::write(tmp.join("optimizer.safetensors"), self.optimizer_bytes()?)?;
            let state = serde_json::to_string_pretty(&self.state()).expect("state serialises");
            std::fs::write(tmp.join("trainer.json"), state)?;
            // `.old` goes only when `dir` replaces it: after a crash mid-swap (`dir` missing)
            // `.old` is the last complete checkpoint and must survive until the new one is in.
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&old);
                std::fs::rename(dir, &old)?;
            }
            std::fs::rename(&tmp, dir)?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(())
        }

        /// Continues a run saved by [`Trainer::save`]: same step count, same lr schedule.
        pub fn resume(dir: &Path, docs: &[String]) -> Result<Self> {
            let dir = if dir.exists() { dir.to_path_buf() } else { sibling(dir, ".old") };
            let model = Model::load(&dir)?;
            let state: TrainerState = serde_json::from_slice(&std::fs::read(dir.join("trainer.json"))?)
                .map_err(|e| Error::Training(format!("trainer.json unreadable: {e}")))?;
            let mut t = Trainer::new(&model, docs, state.options.clone())?;
            t.name = model.name.clone();
            t.restore(state, &std::fs::read(dir.join("optimizer.safetensors"))?)?;
            Ok(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Kernels;
    use crate::diffusion::corpus::split_documents;
    use crate::model::gguf::WeightDtype;
    use candle_core::Device;

    fn fixture() -> Model {
        Model::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/roberta-prelayernorm"))).unwrap()
    }

    fn docs() -> Vec<String> {
        split_documents(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/sample-corpus.txt")).unwrap())
    }

    fn lora(rank: usize, layers: Option<usize>) -> TrainOptions {
        TrainOptions { seq_len: 16, batch_size: 2, rank, layers, eval_sequences: 2, ..Default::default() }
    }

    /// The mean weighted loss of one fixed batch, and its gradients.
    fn loss_of(t: &Trainer, b: &super::super::objective::MaskedBatch) -> (f64, candle_core::backprop::GradStore) {
        let (w, _, _) = loss_terms(&t.encoder, b, t.from_layer()).unwrap();
        let w = (w / b.maskable as f64).unwrap();
        (w.to_scalar::<f32>().unwrap() as f64, w.backward().unwrap())
    }

    /// Gives the adapters' B values (it starts at zero, where A's gradient vanishes) and draws
    /// a batch masked at rate 0.5.
    fn nonzero_b_and_a_batch(t: &mut Trainer, seed: u64) -> super::super::objective::MaskedBatch {
        let mut rng = Rng::new(seed);
        for (_, v) in t.vars.iter().filter(|(n, _)| n.ends_with("lora_b")) {
            let vals: Vec<f32> = (0..v.elem_count()).map(|_| rng.next_f32() - 0.5).collect();
            v.set(&Tensor::from_vec(vals, v.dims(), &Device::Cpu).unwrap()).unwrap();
        }
        let seqs = t.batch();
        mask_batch(&seqs, t.codec.mask_id, MaskSchedule::DEFAULT, 0, Some(0.5), &mut t.rng)
    }

    /// Every adapter entry's gradient (three per tensor) against a central difference of the
    /// loss, on our GEMM (wasm's path) and candle's matmul, with frozen layers below.
    #[test]
    fn lora_gradients_match_finite_differences() {
        let model = fixture();
        for kernels in [Kernels { own_gemm: true, int8: true }, Kernels { own_gemm: false, int8: false }] {
            let mut t = Trainer::new(&model, &docs(), lora(3, Some(1))).unwrap();
            t.encoder.kernels = kernels;
            assert_eq!(t.from_layer(), model.config().num_hidden_layers - 1);
            let b = nonzero_b_and_a_batch(&mut t, 3);
            let (_, grads) = loss_of(&t, &b);
            let h = 1e-2f32;
            for (name, v) in &t.vars {
                let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name} has no gradient")).flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let base = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for k in [0, base.len() / 2, base.len() - 1] {
                    let at = |d: f32| {
                        let mut w = base.clone();
                        w[k] += d;
                        v.set(&Tensor::from_vec(w, v.dims(), &Device::Cpu).unwrap()).unwrap();
                        loss_of(&t, &b).0
                    };
                    let numeric = (at(h) - at(-h)) / (2.0 * h as f64);
                    v.set(&Tensor::from_vec(base.clone(), v.dims(), &Device::Cpu).unwrap()).unwrap();
                    let analytic = g[k] as f64;
                    assert!(
                        (analytic - numeric).abs() <= 2e-4 + 0.03 * numeric.abs().max(analytic.abs()),
                        "{kernels:?} {name}[{k}]: analytic {analytic:.6}, finite difference {numeric:.6}"
                    );
                }
            }
        }
    }

    /// A LoRA fine-tune of a q8_0 model reads its frozen weights through the integer kernel
    /// where inference does (wasm): on the same batch the loss stays within 1 % of the f32
    /// path's and every adapter's gradient within 10 % (relative L2; 2-7 % on this fixture),
    /// what quantizing the activations and the gradients to 8 bits per group of 32 costs.
    #[test]
    fn integer_kernel_training_matches_f32_within_quantization() {
        let mut bytes = std::io::Cursor::new(Vec::new());
        fixture().write_gguf(&mut bytes, WeightDtype::Q8_0).unwrap();
        let model = Model::from_gguf_bytes(bytes.get_ref()).unwrap();
        let run = |int8: bool| {
            let mut t = Trainer::new(&model, &docs(), TrainOptions { batch_size: 4, ..lora(4, Some(2)) }).unwrap();
            t.encoder.kernels = Kernels { own_gemm: true, int8 };
            let b = nonzero_b_and_a_batch(&mut t, 5);
            let (loss, grads) = loss_of(&t, &b);
            let g: Vec<(String, Vec<f32>)> = t.vars.iter().map(|(n, v)| (n.clone(), grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap())).collect();
            (loss, g)
        };
        let ((loss_q, grads_q), (loss_f, grads_f)) = (run(true), run(false));
        assert!((loss_q - loss_f).abs() <= 0.01 * loss_f, "loss {loss_q} (integer kernel) against {loss_f} (f32)");
        assert_eq!(grads_q.len(), 2 * 2 * 6);
        for ((name, q), (_, f)) in grads_q.iter().zip(&grads_f) {
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let diff: Vec<f32> = q.iter().zip(f).map(|(a, b)| a - b).collect();
            let rel = norm(&diff) / norm(f);
            assert!(rel <= 0.1, "{name}: gradient off by {rel:.4} relative to the f32 path's");
        }
    }

    /// Only the adapters train: they are the trainer's variables, the loaded model is
    /// unchanged, and a step moves the loss.
    #[test]
    fn lora_trains_adapters_only_and_top_trains_the_top_layers() {
        let model = fixture();
        let l = model.config().num_hidden_layers;
        let mut t = Trainer::new(&model, &docs(), lora(4, None)).unwrap();
        assert_eq!(t.options.method, Method::Lora);
        assert_eq!(t.vars.len(), l * 6 * 2);
        assert!(t.vars.iter().all(|(n, _)| n.ends_with(".lora_a") || n.ends_with(".lora_b")));
        let before = model.logits_at(&[0, 5, 6, 7, 2], &[1, 2]).unwrap();
        for _ in 0..3 {
            t.step().unwrap();
        }
        assert_eq!(model.logits_at(&[0, 5, 6, 7, 2], &[1, 2]).unwrap(), before, "the loaded model is untouched");
        assert_ne!(t.snapshot().unwrap().logits_at(&[0, 5, 6, 7, 2], &[1, 2]).unwrap(), before, "the trained one differs");

        let o = TrainOptions { method: Method::Top, layers: Some(1), ..lora(4, None) };
        let mut t = Trainer::new(&model, &docs(), o).unwrap();
        let top = format!(".layer.{}.", l - 1);
        assert!(t.vars.iter().all(|(n, _)| !n.contains(".layer.") || n.contains(&top)), "only the top layer's tensors train");
        assert!(t.vars.iter().any(|(n, _)| n.contains("lm_head.dense")), "the head trains");
        assert!(!t.vars.iter().any(|(n, _)| n.contains("embeddings")), "the embeddings (tied decoder) stay frozen");
        for (name, n) in t.gradient_norms().unwrap() {
            assert!(n.is_finite() && n > 0.0, "`{name}` gradient norm {n}");
        }
    }

    /// A snapshot of a LoRA fine-tune of a q8_0 model merges the adapters and stores the
    /// merged weights as q8_0 again: its logits equal base + adapters within the error that
    /// quantizing to q8_0 makes in the first place.
    #[test]
    fn merged_snapshot_matches_base_plus_adapters_within_q8_0() {
        let f32_model = fixture();
        let mut bytes = std::io::Cursor::new(Vec::new());
        f32_model.write_gguf(&mut bytes, WeightDtype::Q8_0).unwrap();
        let model = Model::from_gguf_bytes(bytes.get_ref()).unwrap();
        let o = TrainOptions { lr: Some(2e-2), warmup: Some(1), ..lora(4, None) };
        let mut t = Trainer::new(&model, &docs(), o).unwrap();
        for _ in 0..4 {
            t.step().unwrap();
        }
        let ids: Vec<u32> = (0..12u32).map(|i| (i * 17 + 3) % 300).collect();
        let pos: Vec<usize> = (0..12).collect();
        let ids_t = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        // Base (frozen, dequantized) + adapters, as training computes it.
        let adapted = t.encoder.forward(&ids_t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let merged = t.snapshot().unwrap();
        assert_eq!(merged.info().dtype, model.info().dtype, "stored as the loaded model was");
        let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let merged_logits = merged.logits_at(&ids, &pos).unwrap();
        let quantizing = diff(&f32_model.logits_at(&ids, &pos).unwrap(), &model.logits_at(&ids, &pos).unwrap());
        let moved = diff(&adapted, &model.logits_at(&ids, &pos).unwrap());
        let err = diff(&adapted, &merged_logits);
        assert!(moved > 10.0 * err, "training moved the logits ({moved}) more than merging does ({err})");
        assert!(err <= 2.0 * quantizing, "merged vs base + adapters: {err}; quantizing to q8_0 alone: {quantizing}");
    }

    /// Adapters saved apart load onto their base model and give exactly the merged model a
    /// run's snapshot is; a `top` run has none.
    #[test]
    fn saved_adapters_merge_into_their_base_model_only() {
        use crate::model::adapters::Adapters;
        let mut bytes = std::io::Cursor::new(Vec::new());
        fixture().write_gguf(&mut bytes, WeightDtype::Q8_0).unwrap();
        let model = Model::from_gguf_bytes(bytes.get_ref()).unwrap();
        let o = TrainOptions { lr: Some(2e-2), warmup: Some(1), ..lora(4, Some(1)) };
        let mut t = Trainer::new(&model, &docs(), o).unwrap();
        for _ in 0..3 {
            t.step().unwrap();
        }
        let file = t.adapters().unwrap().expect("LoRA has adapters").to_gguf().unwrap();
        let read = Adapters::from_gguf(&file).unwrap();
        assert_eq!(read.pairs.len(), 6, "one per linear of the one trained layer");
        let merged = read.merge_into(&model).unwrap();
        let (ids, pos) = ([0u32, 5, 6, 7, 8, 2], [1usize, 2, 3, 4]);
        assert_eq!(merged.logits_at(&ids, &pos).unwrap(), t.snapshot().unwrap().logits_at(&ids, &pos).unwrap());
        assert_ne!(merged.logits_at(&ids, &pos).unwrap(), model.logits_at(&ids, &pos).unwrap());
        let e = read.merge_into(&fixture()).err().expect("another base is refused").to_string();
        assert!(e.contains("trained on another base model"), "{e}");
        let e = read.merge_into(&merged).err().expect("the merged model is another base").to_string();
        assert!(e.contains("trained on another base model"), "{e}");
        let top = TrainOptions { method: Method::Top, ..lora(4, Some(1)) };
        assert!(Trainer::new(&model, &docs(), top).unwrap().adapters().unwrap().is_none());
    }

    #[test]
    fn the_learning_rate_decays_over_whichever_ends_the_run() {
        let steps = TrainOptions { lr: Some(1e-3), warmup: Some(10), steps: 110, ..Default::default() };
        assert_eq!(steps.lr_at(4, 0.0), 5e-4, "warm-up");
        assert_eq!(steps.lr_at(10, 0.0), 1e-3);
        assert!((steps.lr_at(110, 0.0) - 1e-4).abs() < 1e-12, "the floor at the last step");
        let timed = TrainOptions { seconds: Some(60.0), ..TrainOptions { lr: Some(1e-3), ..Default::default() } }.budgeted(false).resolved(false);
        assert_eq!((timed.steps, timed.warmup), (BUDGET_STEPS, Some(BUDGET_WARMUP)));
        assert!((timed.lr_at(20, 30.0) - 5.5e-4).abs() < 1e-12, "half the time: half-way down the cosine");
        assert!((timed.lr_at(20, 60.0) - 1e-4).abs() < 1e-12, "the floor when the time ends");
        // Steps and a budget: whichever is further spent.
        let both = TrainOptions { seconds: Some(60.0), ..steps };
        assert!((both.lr_at(60, 0.0) - 5.5e-4).abs() < 1e-12 && (both.lr_at(20, 30.0) - 5.5e-4).abs() < 1e-12);
    }

    #[test]
    fn bad_rank_and_layers_are_refused_with_the_valid_range() {
        let model = fixture();
        let (h, l) = (model.config().hidden_size, model.config().num_hidden_layers);
        let err = |o: TrainOptions| Trainer::new(&model, &docs(), o).err().expect("refused").to_string();
        assert!(err(lora(h + 1, None)).contains(&format!("rank must be in [1, {h}]")));
        assert!(err(lora(4, Some(l + 1))).contains(&format!("layers must be in [1, {l}]")));
        assert!(err(TrainOptions { method: Method::Full, ..lora(4, Some(1)) }).contains("layers applies to method lora or top"));
        let codec = crate::model::bpe::train_bpe(&docs(), 300).unwrap();
        let t = Trainer::from_scratch("tiny", codec, &docs(), lora(4, None)).unwrap();
        assert_eq!(t.options.method, Method::Full, "a model from scratch trains every weight");
    }

    #[test]
    fn samples_of_a_run_use_seed_0_and_no_penalty_from_scratch() {
        let tuned = Trainer::new(&fixture(), &docs(), lora(4, None)).unwrap();
        assert_eq!(tuned.sample_options(), SampleOptions { seed: 0, ..SampleOptions::DEFAULT });
        let codec = crate::model::bpe::train_bpe(&docs(), 300).unwrap();
        let fresh = Trainer::from_scratch("tiny", codec, &docs(), TrainOptions::default()).unwrap();
        assert_eq!((fresh.sample_options().repetition_penalty, fresh.sample_options().prior_penalty), (1.0, 0.0));
        assert_ne!(SampleOptions::DEFAULT.repetition_penalty, 1.0);
    }

    /// The adapters' values, flattened.
    fn trained(t: &Trainer) -> Vec<Vec<f32>> {
        t.vars.iter().map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }

    #[test]
    fn a_fine_tune_ends_on_its_best_evaluation_and_a_new_model_on_its_last_step() {
        // A learning rate far too high for the fixture: the held-out figure soon worsens.
        let opts = TrainOptions { lr: Some(0.05), warmup: Some(0), ..lora(4, None) };
        let mut t = Trainer::new(&fixture(), &docs(), opts.clone()).unwrap();
        assert_eq!(t.options.keep, Some(Keep::Best), "a fine-tune keeps its best weights by default");
        let mut seen = vec![(0, t.evaluate_and_track().unwrap().elbo_perplexity, trained(&t))];
        for _ in 0..4 {
            t.step().unwrap();
            t.step().unwrap();
            seen.push((t.step, t.evaluate_and_track().unwrap().elbo_perplexity, trained(&t)));
        }
        t.step().unwrap();
        let last = trained(&t);
        let kept = t.keep().unwrap();
        // Stop also weighs the weights it stops on: the step after the last evaluation.
        seen.push((t.step, t.evaluate().unwrap().elbo_perplexity, last));
        let best = seen.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!((kept.step, kept.elbo_perplexity), (best.0, Some(best.1)));
        assert_ne!(kept.step, t.step, "this seed's run worsens at the end: the restore is tested");
        assert_eq!(trained(&t), best.2, "the run holds the best evaluation's weights");
        assert_eq!(t.evaluate().unwrap().elbo_perplexity, best.1);
        assert_eq!(t.step, 9, "the steps trained stay counted");

        let last_opts = TrainOptions { keep: Some(Keep::Last), ..opts };
        let mut t = Trainer::new(&fixture(), &docs(), last_opts).unwrap();
        t.evaluate_and_track().unwrap();
        t.step().unwrap();
        let before = trained(&t);
        assert_eq!(t.keep().unwrap().step, 1);
        assert_eq!(trained(&t), before);
        let codec = crate::model::bpe::train_bpe(&docs(), 300).unwrap();
        let fresh = Trainer::from_scratch("tiny", codec, &docs(), TrainOptions::default()).unwrap();
        assert_eq!(fresh.options.keep, Some(Keep::Last), "a new model keeps its last weights by default");
    }

    /// A full fine-tune's checkpoint holds the optimizer's moments and step: resumed, they are
    /// those of the run it came from.
    #[test]
    fn a_checkpoint_resumes_the_optimizer_moments() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::new(&fixture(), &docs(), TrainOptions { method: Method::Full, ..lora(4, None) }).unwrap();
        for _ in 0..2 {
            t.step().unwrap();
        }
        t.save(dir.path()).unwrap();
        let r = Trainer::resume(dir.path(), &docs()).unwrap();
        assert_eq!(r.adam.t, 2);
        assert!(t.adam.m.iter().flatten().any(|&x| x != 0.0));
        assert_eq!((&r.adam.m, &r.adam.v), (&t.adam.m, &t.adam.v));
    }
}
