//! The trainer: fine-tune a model or train one from scratch with the diffusion objective.
//! Single-threaded and file-free at its core so the browser can drive it step by step;
//! checkpoints to disk are a native extra.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::corpus::{window, Corpus};
use super::objective::{loss_terms, mask_batch, MaskSchedule};
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

/// The learning rate when none is given: fine-tuning keeps close to the loaded weights, a
/// fresh tiny model needs a large one to learn within the demo's minute.
pub const FINETUNE_LR: f64 = 1e-4;
pub const SCRATCH_LR: f64 = 2e-3;

options! {
    /// How a training run goes: the one definition of these options (the CLI's `train` flags,
    /// the package's `train()` options and the demo derive from it).
    pub struct TrainOptions {
        /// Tokens per training window, the start and end tokens included.
        seq_len: usize = 64, Kind::int(4, 4096);
        /// Windows per micro-batch.
        batch_size: usize = 16, Kind::int(1, 4096);
        /// Peak learning rate; by default the mode's: 1e-4 fine-tuning, 2e-3 from scratch.
        lr: Option<f64> = None, Kind::real(gt(0.0), lt(1.0));
        /// Steps of linear learning-rate warm-up; by default 5 % of steps, 1 to 200.
        warmup: Option<usize> = None, Kind::int(0, 1_000_000);
        /// Optimizer steps; the learning-rate schedule spans them.
        steps: usize = 200, Kind::int(1, 100_000_000);
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
        /// Validation windows scored by an evaluation.
        eval_sequences: usize = 16, Kind::int(1, 100_000);
        /// Vocabulary of the tokenizer trained on the corpus for a model from scratch.
        vocab: usize = 512, Kind::int(300, 65_536);
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

    /// The learning rate and warm-up filled in where they were left to the mode.
    pub fn resolved(mut self, scratch: bool) -> Self {
        self.lr.get_or_insert(if scratch { SCRATCH_LR } else { FINETUNE_LR });
        self.warmup.get_or_insert((self.steps / 20).clamp(1, 200));
        self
    }

    fn peak_lr(&self) -> f64 {
        self.lr.unwrap_or(FINETUNE_LR)
    }

    pub fn lr_at(&self, step: usize) -> f64 {
        let (lr, warmup) = (self.peak_lr(), self.warmup.unwrap_or(0));
        if step < warmup {
            return lr * (step + 1) as f64 / warmup as f64;
        }
        let span = self.steps.saturating_sub(warmup).max(1) as f64;
        let x = ((step - warmup) as f64 / span).min(1.0);
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

/// What a resumed run needs besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainerState {
    pub step: usize,
    pub tokens: u64,
    pub options: TrainOptions,
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
    rng: Rng,
    name: String,
}

/// Bytes a wasm instance may use for training: its address space is 4 GiB, and the model,
/// the page's buffers and allocator slack need the rest. Natively there is no fixed bound.
const WASM_TRAIN_BUDGET: u64 = 3 << 30;

/// A rough upper estimate of a run's memory: f32 weights + gradients + two Adam moments, the
/// activations kept for the backward pass (per layer: ~14 hidden-wide and 4 FFN-wide values
/// per token plus 3 attention maps), and logits with their softmax and gradient.
pub fn estimate_bytes(config: &ModelConfig, o: &TrainOptions) -> u64 {
    let (h, i, l, v) = (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size);
    let tokens = (o.batch_size as u64).saturating_mul(o.seq_len as u64);
    let per_token = (l as u64).saturating_mul((14 * h + 4 * i + 3 * config.num_attention_heads * o.seq_len) as u64);
    let activations = tokens.saturating_mul(per_token.saturating_add(3 * v as u64)).saturating_mul(4);
    (config.parameter_count() as u64).saturating_mul(16).saturating_add(activations)
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
    /// Fine-tunes `model` (quantized weights are dequantized to f32 first).
    pub fn new(model: &Model, docs: &[String], options: TrainOptions) -> Result<Self> {
        let tensors = model.store.to_dense()?;
        Self::from_tensors(&model.name, model.config().clone(), model.codec.clone(), tensors, docs, options.resolved(false))
    }

    /// A fresh model of a named size (`tiny`, `small`) with `codec`'s vocabulary.
    pub fn from_scratch(size: &str, codec: TextCodec, docs: &[String], options: TrainOptions) -> Result<Self> {
        let mut config = ModelConfig::named(size, codec.vocab_size)?;
        config.pad_token_id = codec.pad_id;
        config.bos_token_id = Some(codec.bos_id);
        config.eos_token_id = Some(codec.eos_id);
        let tensors: HashMap<String, Tensor> = init::fresh_tensors(&config, options.seed, 0.02)?.into_iter().collect();
        Self::from_tensors(&format!("unmask-{size}"), config, codec, tensors, docs, options.resolved(true))
    }

    fn from_tensors(
        name: &str,
        config: ModelConfig,
        codec: TextCodec,
        tensors: HashMap<String, Tensor>,
        docs: &[String],
        options: TrainOptions,
    ) -> Result<Self> {
        options.validate(config.max_sequence_len())?;
        check_memory(&config, &options)?;
        let corpus = Corpus::build(&codec, docs, options.valid_fraction, options.seed, options.seq_len)?;
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
            name: name.to_string(),
        })
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

    fn step_here(&mut self) -> Result<StepReport> {
        let lr = self.options.lr_at(self.step);
        let mut grads: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let (mut ce_sum, mut obj_sum, mut masked, mut maskable, mut tokens) = (0f32, 0f32, 0usize, 0usize, 0usize);
        for _ in 0..self.options.accumulate {
            let seqs = self.batch();
            let b = mask_batch(&seqs, self.codec.mask_id, self.options.schedule, self.options.max_prefix, None, &mut self.rng);
            let (weighted, plain, n) = loss_terms(&self.encoder, &b)?;
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
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()?;
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
        if clip > 0.0 && grad_norm as f64 > clip {
            let s = clip / grad_norm as f64;
            for g in grads.iter_mut().flatten() {
                *g = (&*g * s)?;
            }
        }
        self.adam.update(&self.vars, &grads, lr)?;
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
        let (weighted, _, _) = loss_terms(&self.encoder, &b)?;
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
        let n = self.options.eval_sequences.max(1);
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
            let (w, plain, m) = loss_terms(&self.encoder, &b)?;
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

    /// Current weights as f32 tensors in the Hugging Face layout.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.vars.iter().map(|(n, v)| Ok((n.clone(), v.as_detached_tensor().copy()?))).collect()
    }

    /// An inference model from the current weights (independent of further training).
    pub fn snapshot(&self) -> Result<Model> {
        let mut store = WeightStore::default();
        for (n, t) in self.tensors()? {
            store.insert(n, Stored::Dense(t));
        }
        Model::from_parts(&self.name, self.config.clone(), store, self.codec.json())
    }

    /// `model.safetensors` bytes (Hugging Face layout; the decoder is tied, not stored).
    pub fn safetensors_bytes(&self) -> Result<Vec<u8>> {
        crate::model::weights::serialize(&self.tensors()?)
    }

    pub fn state(&self) -> TrainerState {
        TrainerState { step: self.step, tokens: self.tokens, options: self.options.clone() }
    }

    /// Optimizer moments as a safetensors buffer.
    #[cfg(not(target_arch = "wasm32"))]
    fn optimizer_bytes(&self) -> Result<Vec<u8>> {
        let mut named = Vec::new();
        for (i, (n, _)) in self.vars.iter().enumerate() {
            named.push((format!("m.{n}"), self.adam.m[i].clone()));
            named.push((format!("v.{n}"), self.adam.v[i].clone()));
        }
        crate::model::weights::serialize(&named)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn restore(&mut self, state: TrainerState, optimizer: &[u8]) -> Result<()> {
        let opt = candle_core::safetensors::load_buffer(optimizer, &candle_core::Device::Cpu)
            .map_err(|e| Error::Training(format!("optimizer state unreadable: {e}")))?;
        for (i, (n, v)) in self.vars.iter().enumerate() {
            let (m, vv) = (opt.get(&format!("m.{n}")), opt.get(&format!("v.{n}")));
            match (m, vv) {
                (Some(m), Some(vv)) if m.dims() == v.as_tensor().dims() => {
                    self.adam.m[i] = m.clone();
                    self.adam.v[i] = vv.clone();
                }
                _ => return Err(Error::Training(format!("optimizer state lacks `{n}`"))),
            }
        }
        self.adam.t = state.step;
        self.step = state.step;
        self.tokens = state.tokens;
        // A resumed run draws different batches than the first leg did.
        self.rng = Rng::new(self.options.seed ^ 0x7a11 ^ (state.step as u64).wrapping_mul(0x9e37_79b9));
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
