//! The encoder on a GPU: the CPU encoder's weights uploaded once, and the one forward pass
//! ([`super::forward`]) recorded into a single WebGPU submission.

use super::encoder::check_sequence;
use super::forward::{self, Weights, Wiring};
use super::{Encoder, ModelConfig};
use crate::backend::rank::{Ranked, Scoring};
use crate::backend::webgpu::{ranked_k, Gpu, GpuEmbeddings, GpuLinear, GpuNorm, GpuOps, Pass, Rows};
use crate::error::{Error, Result};

/// An encoder whose weights live on the GPU.
pub struct GpuEncoder {
    pub ops: GpuOps,
    weights: Weights<GpuLinear, GpuNorm, GpuEmbeddings>,
    wiring: Wiring,
    config: ModelConfig,
}

impl GpuEncoder {
    /// Uploads `enc`'s weights (q8_0 matrices in their quantized form, the rest as f32).
    /// Refuses models the adapter's kernels or buffer limit cannot hold.
    pub fn new(gpu: Gpu, enc: &Encoder) -> Result<Self> {
        let cfg = &enc.config;
        let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
        if h / heads > 128 {
            return Err(Error::Device(format!("head size {} exceeds the attention kernel's 128", h / heads)));
        }
        let biggest = (cfg.vocab_size.max(cfg.intermediate_size) * h * 4) as u64;
        if biggest > gpu.max_buffer {
            return Err(Error::Device(format!(
                "a {biggest}-byte weight exceeds the adapter's storage buffer limit of {} bytes",
                gpu.max_buffer
            )));
        }
        let weights = enc.weights.try_map(
            |l, name| GpuLinear::upload(&gpu, l, name),
            |n, name| GpuNorm::upload(&gpu, n, name),
            |e| GpuEmbeddings::upload(&gpu, e),
        )?;
        Ok(Self { ops: GpuOps::new(gpu), weights, wiring: enc.wiring, config: cfg.clone() })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn gpu(&self) -> &Gpu {
        &self.ops.gpu
    }

    /// Gives the device back (to upload other weights on it).
    pub fn into_gpu(self) -> Gpu {
        self.ops.gpu
    }

    /// How many matrices live on the GPU as q8_0 blocks.
    pub fn quantized_matrices(&self) -> usize {
        self.weights.linears().filter(|l| l.quantized()).count()
    }

    /// Records the forward of one checked sequence up to the logits of `positions`.
    fn record(&self, ids: &[u32], positions: &[usize]) -> Result<(Pass<'_>, Rows)> {
        let rows: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let mut pass = self.ops.pass();
        let x = forward::hidden(&mut pass, &self.weights, &self.wiring, ids, 1, Some(&rows))?;
        let logits = forward::head(&mut pass, &self.weights, &self.wiring, &x)?;
        Ok((pass, logits))
    }

    /// Logits `[positions × vocab]` (row-major) for one sequence, like `Encoder::logits_at`.
    pub async fn logits_at(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        check_sequence(&self.config, ids, positions)?;
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let (pass, logits) = self.record(ids, positions)?;
        pass.read(&logits).await
    }

    /// The rows' top `k` allowed ids by temperature-scaled logit (repetition penalty applied),
    /// with their scaled logits and each row's log-normaliser, ranked on the GPU: a step reads
    /// back `2k + 1` words per row instead of the vocabulary (16,384 for the default model).
    /// `k` is clamped to the vocabulary.
    pub async fn ranked_at(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Ranked> {
        check_sequence(&self.config, ids, positions)?;
        // Checked before any work is recorded: no forward for nothing to rank or a bad request.
        let k = ranked_k(s, self.config.vocab_size)?;
        if positions.is_empty() {
            return Ok(Ranked { k, ..Default::default() });
        }
        let (pass, logits) = self.record(ids, positions)?;
        pass.rank(&logits, s).await
    }

    /// [`GpuEncoder::ranked_at`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn ranked_at_blocking(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Ranked> {
        pollster::block_on(self.ranked_at(ids, positions, s))
    }

    /// [`GpuEncoder::logits_at`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits_at_blocking(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        pollster::block_on(self.logits_at(ids, positions))
    }
}
