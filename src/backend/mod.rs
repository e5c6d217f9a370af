//! Where the encoder's heavy operations run. The model (`src/model`) writes its forward pass
//! once over [`Ops`]; this module knows no model, only rows of activations, weights and the
//! kernels that combine them. Three implementations:
//!
//! - [`cpu::Infer`]: inference on the CPU, with fused kernels over plain slices whose inner
//!   loops are ours ([`gemm`], [`int8`], [`simd`]) where they beat candle;
//! - [`cpu::Train`]: training on the CPU, only ops that have backward passes (candle's, and
//!   our GEMM as one: [`train_gemm`]; candle's fused layer norm and softmax record none: a
//!   training forward through them would silently stop the gradients there);
//! - `webgpu::Pass`: WGSL kernels recorded into one compute pass (feature `webgpu`).

pub mod cpu;
pub mod gemm;
pub mod int8;
pub mod par;
pub mod rank;
pub mod simd;
pub mod train_attention;
pub mod train_gemm;
pub mod train_rows;
#[cfg(feature = "webgpu")]
pub mod webgpu;

use crate::error::Result;

/// The activations `transformers` names in `hidden_act` that we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact erf GELU (`gelu`).
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// Which CPU kernels a forward uses, handed to [`cpu::Infer`] and [`cpu::Train`] (which
/// takes only `own_gemm`). The default
/// is the faster choice measured per platform: our GEMM and the integer kernel in wasm32,
/// candle's matmul and f32 weights natively (`bench/RESULTS.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// f32 linears through our SIMD128-style GEMM ([`gemm`]) rather than candle's matmul.
    pub own_gemm: bool,
    /// Quantized linears through the integer kernel ([`int8`]) rather than their f32 form.
    pub int8: bool,
}

impl Kernels {
    pub const PLATFORM: Self = Self { own_gemm: cfg!(target_arch = "wasm32"), int8: cfg!(target_arch = "wasm32") };
}

impl Default for Kernels {
    fn default() -> Self {
        Self::PLATFORM
    }
}

/// The operations an encoder forward pass is made of, on some device. `X` holds activations:
/// rows of one width, for one sequence or a batch of sequences of equal length (no padding in
/// Unmask's batches). Weights are the backend's own types, made once per model.
pub trait Ops {
    type X;
    type Linear;
    type Norm;
    type Embeddings;

    /// Word + position (+ token type) embeddings of `batch` sequences of equal length whose ids
    /// are `ids`, positions counted from `offset`.
    fn embed(&mut self, e: &Self::Embeddings, ids: &[u32], batch: usize, offset: usize) -> Result<Self::X>;
    /// `act(x · Wᵀ + b)`.
    fn linear(&mut self, l: &Self::Linear, x: &Self::X, act: Option<Activation>) -> Result<Self::X>;
    /// Layer norm of `x + residual` (of `x` alone without one).
    fn add_norm(&mut self, n: &Self::Norm, x: &Self::X, residual: Option<&Self::X>) -> Result<Self::X>;
    /// [`Ops::add_norm`] that also returns the sum `x + residual` (the pre-LN residual stream);
    /// a device with a fused kernel writes both in one pass.
    fn add_norm_keep(&mut self, n: &Self::Norm, x: &Self::X, residual: &Self::X) -> Result<(Self::X, Self::X)> {
        let sum = self.add(x, residual)?;
        Ok((self.add_norm(n, &sum, None)?, sum))
    }
    fn add(&mut self, a: &Self::X, b: &Self::X) -> Result<Self::X>;
    /// Unmasked multi-head scaled dot-product attention of the rows of `q` over those of `k`
    /// and `v` (per sequence; heads side by side in the width). `q` holds every row of the
    /// batch, or with `queries` only those rows ([`Ops::gather_rows`]' numbering): each attends
    /// over the keys of its own sequence.
    fn attention(&mut self, q: &Self::X, k: &Self::X, v: &Self::X, heads: usize, queries: Option<&[u32]>) -> Result<Self::X>;
    /// Rows `rows` of `x`, numbered across the batch (row `i` of sequence `b` is `b · seq + i`)
    /// and grouped by sequence, the sequences in order, as rows of their own.
    fn gather_rows(&mut self, x: &Self::X, rows: &[u32]) -> Result<Self::X>;
}

/// Which rows of an attention's `q` (`q_rows` of them) belong to each of the `batch`
/// sequences of `keys` rows: every row's own sequence's, or the sequences of `queries`
/// ([`Ops::attention`]).
pub(crate) fn query_spans(queries: Option<&[u32]>, q_rows: usize, batch: usize, keys: usize) -> Result<Vec<std::ops::Range<usize>>> {
    let Some(rows) = queries else {
        let t = q_rows / batch.max(1);
        return Ok((0..batch).map(|b| b * t..(b + 1) * t).collect());
    };
    let in_range = rows.len() == q_rows && rows.iter().all(|&r| (r as usize) < batch * keys);
    if !in_range || rows.windows(2).any(|w| w[0] as usize / keys > w[1] as usize / keys) {
        return Err(crate::error::Error::input(format!(
            "attention: {q_rows} query rows need as many row numbers below {}, grouped by sequence in order",
            batch * keys
        )));
    }
    let mut spans = Vec::with_capacity(batch);
    let mut at = 0;
    for b in 0..batch {
        let end = at + rows[at..].iter().take_while(|&&r| (r as usize) < (b + 1) * keys).count();
        spans.push(at..end);
        at = end;
    }
    Ok(spans)
}
