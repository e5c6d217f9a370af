//! The CPU backend: [`Infer`] (inference: fused kernels over plain slices for attention,
//! GELU and, where they are the faster ones, the linears, [`super::gemm`], [`super::int8`],
//! [`super::simd`]; a profile of a generation in Chromium put a third of the time in candle's
//! softmax and GELU, scalar libm `expf` / `erff`, and its attention matmuls) and [`Train`]
//! (candle's differentiable ops). Both hold activations as candle tensors `[batch, seq, width]`.

use std::sync::{Arc, OnceLock};

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use super::int8::QWeights;
use super::train_gemm::WeightView;
use super::{gemm, par, simd, Activation, Kernels, Ops};
use crate::error::Result;

/// A linear layer, `[out, in]` weights. Computation is in f32 or, for weights stored
/// quantized, through the integer kernel ([`super::int8`]) where [`Kernels::int8`] asks for
/// it. The f32 form of a quantized weight is made on first use only: with the integer kernel
/// (the wasm default) it is never needed, and a quantized model's linears stay at 1–2 bytes
/// per weight in wasm memory instead of 4 more (f32 is what computes fastest on the CPU
/// otherwise: candle's quantized matmul is 2.3× slower than its f32 one).
pub struct Linear {
    weight: OnceLock<Tensor>,
    /// The stored blocks of a weight kept quantized until its f32 form is asked for.
    blocks: Option<Arc<QTensor>>,
    /// `(out, in)`.
    pub dims: (usize, usize),
    pub bias: Option<Tensor>,
    /// Stored quantized in the file: inference may use the integer kernel.
    pub quantized: bool,
    /// The integer kernel's copy of the weight, made on first use.
    int8: OnceLock<Arc<QWeights>>,
    /// The same of the transposed weight, for a frozen linear's backward (training only).
    int8_t: OnceLock<Arc<QWeights>>,
    /// A trained low-rank update added to this linear's output (a LoRA fine-tune).
    pub adapter: Option<Adapter>,
}

/// A low-rank update of a linear (LoRA): `y += scale · (x · Aᵀ) · Bᵀ` with `A [rank, in]` and
/// `B [out, rank]`. A fine-tune trains these while the linear's own weight stays frozen.
pub struct Adapter {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

impl Adapter {
    /// The update as one `[out, in]` matrix, for merging into the weight.
    pub fn delta(&self) -> Result<Tensor> {
        Ok((self.b.matmul(&self.a)? * self.scale)?)
    }

    /// `scale · (x · Aᵀ) · Bᵀ` for rows `x [.., in]`, differentiable. Two thin products on our
    /// GEMM: rank is small, so this costs `2 · rank / in` of the frozen linear's work per row.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        // Scaled on the thin side: rank values a row, not `out`.
        let low = (super::train_gemm::linear(x, &self.a, None)? * self.scale)?;
        Ok(super::train_gemm::linear(&low, &self.b, None)?)
    }
}

/// `y + adapter(x)` where the linear has one.
fn adapted(l: &Linear, x: &Tensor, y: Tensor) -> Result<Tensor> {
    Ok(match &l.adapter {
        Some(a) => (y + a.apply(x)?)?,
        None => y,
    })
}

impl Linear {
    /// From f32 weights `[out, in]`; `quantized` when the file stored them quantized.
    pub fn new(weight: Tensor, bias: Option<Tensor>, quantized: bool) -> Result<Self> {
        let dims = weight.dims2()?;
        Ok(Self { weight: weight.into(), blocks: None, dims, bias, quantized, int8: Default::default(), int8_t: Default::default(), adapter: None })
    }

    /// From quantized blocks of shape `dims`, dequantized when an f32 form is needed.
    pub fn from_blocks(blocks: Arc<QTensor>, bias: Option<Tensor>, dims: (usize, usize), quantized: bool) -> Self {
        Self { weight: Default::default(), blocks: Some(blocks), dims, bias, quantized, int8: Default::default(), int8_t: Default::default(), adapter: None }
    }

    /// The stored quantized blocks, when the weight came as blocks.
    pub fn blocks(&self) -> Option<&QTensor> {
        self.blocks.as_deref()
    }

    /// The f32 weight `[out, in]` (dequantized on first use when the file stores it quantized).
    pub fn weight(&self) -> Result<&Tensor> {
        if let Some(w) = self.weight.get() {
            return Ok(w);
        }
        let q = self.blocks.as_ref().expect("a linear holds f32 weights or stored blocks");
        let w = q.dequantize(&Device::Cpu)?;
        Ok(self.weight.get_or_init(|| w))
    }

    /// The integer kernel's form of the weight, made on first use (from a temporary f32 copy
    /// when no f32 form is kept).
    fn int8(&self) -> Result<&Arc<QWeights>> {
        let (n, k) = self.dims;
        self.int8_of(&self.int8, |w| Ok(QWeights::from_f32(w, n, k)))
    }

    /// The integer form of `Wᵀ` (`[in, out]`, groups along `out`).
    fn int8_transposed(&self) -> Result<&Arc<QWeights>> {
        let (n, k) = self.dims;
        self.int8_of(&self.int8_t, |w| Ok(QWeights::from_f32(&gemm::transposed(w, n, k), k, n)))
    }

    fn int8_of<'a>(&self, slot: &'a OnceLock<Arc<QWeights>>, make: impl FnOnce(&[f32]) -> Result<QWeights>) -> Result<&'a Arc<QWeights>> {
        if let Some(q) = slot.get() {
            return Ok(q);
        }
        let q = match (self.weight.get(), &self.blocks) {
            (None, Some(b)) => with_f32(&b.dequantize(&Device::Cpu)?, make)??,
            _ => with_f32(self.weight()?, make)??,
        };
        Ok(slot.get_or_init(|| Arc::new(q)))
    }

    /// Whether the weight gets no gradient (a fine-tune's frozen base). One kept in stored
    /// blocks with no f32 form is frozen: trained weights are f32 variables.
    pub fn is_frozen(&self) -> bool {
        self.weight.get().is_none_or(|w| !w.track_op())
    }

    /// A frozen weight as training's ops read it: through the integer kernel, forward and
    /// backward, where inference uses it for this weight (`kernels`), else in f32.
    pub fn frozen(&self, kernels: Kernels) -> Result<WeightView> {
        Ok(if self.quantized && kernels.int8 {
            WeightView::Int8 { w: self.int8()?.clone(), wt: self.int8_transposed()?.clone() }
        } else {
            WeightView::F32(self.weight()?.clone())
        })
    }
}

/// A layer norm's parameters.
pub struct Norm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

/// Embedding tables: words `[vocab, h]`, positions `[max, h]`, one token type `[1, h]`.
pub struct Embeddings {
    pub word: Tensor,
    pub position: Tensor,
    pub token_type: Option<Tensor>,
}

/// Inference on the CPU with the kernels [`Kernels`] chooses.
pub struct Infer {
    pub kernels: Kernels,
}

/// A training forward: only ops that carry gradients (candle's, and our GEMM as a
/// differentiable op where `kernels.own_gemm` says so).
pub struct Train {
    pub kernels: Kernels,
}

/// Word, position and token-type embeddings of each row, summed. The position and token-type
/// rows are gathered per row rather than broadcast: a gather's gradient is candle's
/// `index_add`, one pass over the rows, where a broadcast's is a strided `ReduceSum` (1.7 ms of
/// a tiny model's training step on one thread while the others wait).
fn embed(e: &Embeddings, ids: &[u32], batch: usize, offset: usize) -> Result<Tensor> {
    let (t, h) = (ids.len() / batch.max(1), e.word.dim(1)?);
    let dev = e.word.device();
    let rows = |table: &Tensor, at: Vec<u32>| table.index_select(&Tensor::new(at, dev)?, 0);
    let positions = (0..ids.len()).map(|r| (offset + r % t.max(1)) as u32).collect();
    let mut x = (rows(&e.word, ids.to_vec())? + rows(&e.position, positions)?)?;
    if let Some(tt) = &e.token_type {
        x = (x + rows(tt, vec![0; ids.len()])?)?;
    }
    Ok(x.reshape((batch, t, h))?)
}

fn sum(a: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    Ok(match b {
        Some(b) => (a + b)?,
        None => a.clone(),
    })
}

fn gather_rows(x: &Tensor, rows: &[u32]) -> Result<Tensor> {
    let h = *x.dims().last().expect("x has a last dimension");
    Ok(x.reshape(((), h))?.index_select(&Tensor::new(rows, x.device())?, 0)?)
}

impl Ops for Infer {
    type X = Tensor;
    type Linear = Linear;
    type Norm = Norm;
    type Embeddings = Embeddings;

    fn embed(&mut self, e: &Embeddings, ids: &[u32], batch: usize, offset: usize) -> Result<Tensor> {
        embed(e, ids, batch, offset)
    }
    /// The integer kernel for quantized weights where asked for, else our GEMM or candle's
    /// matmul; GELU on our vectorised kernel.
    fn linear(&mut self, l: &Linear, x: &Tensor, act: Option<Activation>) -> Result<Tensor> {
        let (n, k) = l.dims;
        // Our kernels' output is a buffer of ours until it becomes a tensor: the activation
        // maps it there, in place (an adapter is added first, to the tensor).
        let in_place = act.filter(|_| l.adapter.is_none());
        let y = if l.quantized && self.kernels.int8 {
            let q = l.int8()?;
            rows_through(x, l.bias.as_ref(), k, n, in_place, |xs, bias, m, out| {
                super::int8::matmul_q(xs, q, bias, m, out);
                Ok(())
            })?
        } else if self.kernels.own_gemm {
            let w = l.weight()?;
            rows_through(x, l.bias.as_ref(), k, n, in_place, |xs, bias, m, out| with_f32(w, |ws| gemm::matmul_t(xs, ws, bias, m, k, n, out)))?
        } else {
            return activated(adapted(l, x, candle_linear(x, l)?)?, act);
        };
        match in_place {
            Some(_) => Ok(y),
            None => activated(adapted(l, x, y)?, act),
        }
    }
    fn add_norm(&mut self, n: &Norm, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let eps = n.eps as f32;
        let y = with_f32(&n.weight, |g| {
            with_f32(&n.bias, |b| {
                with_f32(x, |xs| match residual {
                    Some(r) => with_f32(r, |rs| super::train_rows::add_layer_norm(xs, Some(rs), g, b, eps)),
                    None => Ok(super::train_rows::add_layer_norm(xs, None, g, b, eps)),
                })
            })
        })?????;
        Ok(Tensor::from_vec(y, x.shape(), x.device())?)
    }
    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok((a + b)?)
    }
    fn attention(&mut self, q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, queries: Option<&[u32]>) -> Result<Tensor> {
        let (b, tk, h) = k.dims3()?;
        let spans = super::query_spans(queries, q.elem_count() / h, b, tk)?;
        let out = with_f32(q, |q| with_f32(k, |k| with_f32(v, |v| attention_rows(q, k, v, &spans, tk, h, heads))))????;
        Ok(Tensor::from_vec(out, q.shape(), q.device())?)
    }
    fn gather_rows(&mut self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        gather_rows(x, rows)
    }
}

impl Ops for Train {
    type X = Tensor;
    type Linear = Linear;
    type Norm = Norm;
    type Embeddings = Embeddings;

    fn embed(&mut self, e: &Embeddings, ids: &[u32], batch: usize, offset: usize) -> Result<Tensor> {
        embed(e, ids, batch, offset)
    }
    /// A frozen weight goes through our GEMM on every platform: its backward then skips the
    /// weight's gradient, which candle's matmul computes whether or not anything needs it.
    fn linear(&mut self, l: &Linear, x: &Tensor, act: Option<Activation>) -> Result<Tensor> {
        let (n, k) = l.dims;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = n;
        let frozen = l.is_frozen();
        let y = match &l.adapter {
            Some(a) if frozen => super::train_gemm::lora_linear(&x.reshape(((), k))?, l.frozen(self.kernels)?, l.bias.as_ref(), &a.a, &a.b, a.scale)?.reshape(dims)?,
            _ if self.kernels.own_gemm || frozen => adapted(l, x, super::train_gemm::linear(x, l.weight()?, l.bias.as_ref())?)?,
            _ => adapted(l, x, candle_linear(x, l)?)?,
        };
        Ok(match act {
            None => y,
            // Ours, not candle's fused `gelu` (~1e-3 from `transformers`' gelu_new).
            Some(a @ (Activation::Gelu | Activation::GeluTanh)) => super::train_rows::gelu(&y, a == Activation::GeluTanh)?,
            Some(Activation::Relu) => y.relu()?,
        })
    }
    fn add_norm(&mut self, n: &Norm, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        Ok(super::train_rows::layer_norm(&sum(x, residual)?, &n.weight, &n.bias, n.eps)?)
    }
    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok((a + b)?)
    }
    fn attention(&mut self, q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, queries: Option<&[u32]>) -> Result<Tensor> {
        let (b, tk, h) = k.dims3()?;
        let spans = super::query_spans(queries, q.elem_count() / h, b, tk)?;
        Ok(super::train_attention::attention(q, k, v, heads, spans)?)
    }
    fn gather_rows(&mut self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        gather_rows(x, rows)
    }
}

/// `x · Wᵀ + b` by candle's (differentiable) matmul.
fn candle_linear(x: &Tensor, l: &Linear) -> Result<Tensor> {
    let y = x.broadcast_matmul(&l.weight()?.t()?)?;
    Ok(match &l.bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// `act(y)`: a copy of `y` mapped in place.
fn activated(y: Tensor, act: Option<Activation>) -> Result<Tensor> {
    match act {
        None => Ok(y),
        Some(a) => {
            let mut v = y.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
            activate(&mut v, a);
            Ok(Tensor::from_vec(v, y.dims(), y.device())?)
        }
    }
}

/// `v = act(v)` across the pool, on our vectorised GELU.
fn activate(v: &mut [f32], act: Activation) {
    // Chunks of the pool's tasks: a multiple of 4 lanes.
    match act {
        Activation::GeluTanh => par::chunks_mut(v, 1 << 14, |c| simd::map_in_place(c, simd::gelu_tanh)),
        Activation::Gelu => par::chunks_mut(v, 1 << 14, |c| simd::map_in_place(c, simd::gelu_erf)),
        Activation::Relu => par::chunks_mut(v, 1 << 14, |c| c.iter_mut().for_each(|x| *x = x.max(0.0))),
    }
}

/// Our row-major kernels on tensors: `kernel(x, bias, m, out)` maps the `m` rows of width
/// `k` of `x` to `out[m × n]`, writing every element, then `act` maps it in place; the result
/// keeps `x`'s leading dimensions. `x` is read in place and `out` is not zeroed first: both
/// were copies made on the thread that waits for the pool.
fn rows_through(
    x: &Tensor,
    b: Option<&Tensor>,
    k: usize,
    n: usize,
    act: Option<Activation>,
    kernel: impl FnOnce(&[f32], Option<&[f32]>, usize, &par::Out) -> Result<()>,
) -> Result<Tensor> {
    let m = x.elem_count() / k;
    let bias = b.map(|b| b.to_vec1::<f32>()).transpose()?;
    // SAFETY: the kernels given here (matmul_t, matmul_q) write all m × n outputs.
    let mut out = with_f32(x, |xs| unsafe { par::written(m * n, |out| kernel(xs, bias.as_deref(), m, out)) })??;
    if let Some(a) = act {
        activate(&mut out, a);
    }
    let mut shape = x.dims().to_vec();
    *shape.last_mut().expect("x has a last dimension") = n;
    Ok(Tensor::from_vec(out, shape, x.device())?)
}

/// Runs `f` on the f32 data of a contiguous CPU tensor without copying it (weights are
/// read every step: a copy would double the work of the smaller matmuls).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) => Ok(f(&v[a..b])),
        _ => {
            drop(storage);
            Ok(f(&t.contiguous()?.flatten_all()?.to_vec1::<f32>()?))
        }
    }
}

/// [`Infer`]'s attention on slices, one task per (sequence, head) across the thread pool: the
/// head's Q (pre-scaled), Kᵀ and V are gathered into contiguous blocks for our untransposed
/// GEMM ([`gemm::matmul_nn`]); the softmax leaves its rows unnormalised and the context rows
/// are divided by their sums instead (`hd` divisions per row rather than `t`). `spans[b]`:
/// the rows of `q` (and of the output) that attend over sequence `b`'s `tk` keys.
fn attention_rows(q: &[f32], k: &[f32], v: &[f32], spans: &[std::ops::Range<usize>], tk: usize, h: usize, heads: usize) -> Result<Vec<f32>> {
    let hd = h / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let q_rows = spans.last().map_or(0, |s| s.end);
    let heads_of = |dst: &par::Out| par::for_each(spans.len() * heads, |task| {
        let (bi, head) = (task / heads, task % heads);
        let (q0, tq) = (spans[bi].start, spans[bi].len());
        let (mut qh, mut kt, mut vh) = (vec![0f32; tq * hd], vec![0f32; hd * tk], vec![0f32; tk * hd]);
        let (mut scores, mut ctx, mut sums) = (vec![0f32; tq * tk], vec![0f32; tq * hd], vec![0f32; tq]);
        for i in 0..tq {
            let src = (q0 + i) * h + head * hd;
            for d in 0..hd {
                qh[i * hd + d] = q[src + d] * scale;
            }
        }
        for i in 0..tk {
            let src = (bi * tk + i) * h + head * hd;
            for d in 0..hd {
                kt[d * tk + i] = k[src + d];
            }
            vh[i * hd..(i + 1) * hd].copy_from_slice(&v[src..src + hd]);
        }
        gemm::matmul_nn(&qh, &kt, tq, hd, tk, &mut scores);
        for (row, s) in scores.chunks_exact_mut(tk).zip(sums.iter_mut()) {
            *s = simd::exp_shifted_row(row);
        }
        gemm::matmul_nn(&scores, &vh, tq, tk, hd, &mut ctx);
        for (i, row) in ctx.chunks_exact_mut(hd).enumerate() {
            let inv = 1.0 / sums[i];
            row.iter_mut().for_each(|c| *c *= inv);
            dst.write((q0 + i) * h + head * hd, row);
        }
    });
    // SAFETY: the (sequence, head) tasks write every row of every head (heads · hd = h), and
    // the spans cover `q`'s rows.
    unsafe {
        par::written(q_rows * h, |dst| {
            heads_of(dst);
            Ok(())
        })
    }
}
