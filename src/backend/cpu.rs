//! CPU implementations of the encoder's ops: candle's tensors (training, which needs their
//! backward passes), or for inference fused kernels over plain slices (attention, GELU) whose
//! inner loops are ours ([`super::gemm`], [`super::simd`]). A profile of a generation in
//! Chromium put a third of the time in candle's softmax and GELU (scalar libm `expf` /
//! `erff`) and its attention matmuls.

use candle_core::{Tensor, D};

use super::{gemm, simd, Mode};
use crate::error::Result;
use crate::model::config::Activation;

/// Inference runs attention and GELU on our fused slice kernels everywhere (in Chromium a
/// generation spent a third of its time in candle's versions; natively ours are ~3 % faster
/// too). The linears use our GEMM only where [`gemm::own_enabled`] (wasm32).
fn fused(mode: Mode) -> bool {
    mode == Mode::Inference
}

/// `x · Wᵀ + b` over the last dimension of `x` (`W` is `[out, in]`). Inference goes through
/// our kernel where it is the faster one; training keeps candle's differentiable matmul.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, mode: Mode) -> Result<Tensor> {
    if mode == Mode::Inference && gemm::own_enabled() {
        let (n, k) = w.dims2()?;
        return rows_through(x, b, k, n, |xs, bias, m, out| with_f32(w, |ws| super::gemm::matmul_t(xs, ws, bias, m, k, n, out)));
    }
    let y = x.broadcast_matmul(&w.t()?)?;
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// `x · Wᵀ + b` through the integer kernel ([`super::int8`]), for quantized files.
pub fn linear_int8(x: &Tensor, w: &super::int8::QWeights, b: Option<&Tensor>) -> Result<Tensor> {
    rows_through(x, b, w.k, w.n, |xs, bias, m, out| {
        super::int8::matmul_q(xs, w, bias, m, out);
        Ok(())
    })
}

/// Our row-major kernels on tensors: `kernel(x, bias, m, out)` maps the `m` rows of width
/// `k` of `x` to `out[m × n]`; the result keeps `x`'s leading dimensions.
fn rows_through(
    x: &Tensor,
    b: Option<&Tensor>,
    k: usize,
    n: usize,
    kernel: impl FnOnce(&[f32], Option<&[f32]>, usize, &mut [f32]) -> Result<()>,
) -> Result<Tensor> {
    let m = x.elem_count() / k;
    let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let bias = b.map(|b| b.to_vec1::<f32>()).transpose()?;
    let mut out = vec![0f32; m * n];
    kernel(&xs, bias.as_deref(), m, &mut out)?;
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

/// Layer norm over the last dimension.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference => Ok(candle_nn::ops::layer_norm(&x.contiguous()?, w, b, eps as f32)?),
        Mode::Train => {
            let mean = x.mean_keepdim(D::Minus1)?;
            let xc = x.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
            let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
            Ok(xn.broadcast_mul(w)?.broadcast_add(b)?)
        }
    }
}

/// Softmax over the last dimension from ops that all have backward passes (training's
/// attention; inference has the fused kernel in [`attention_rows`]).
fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

pub fn activation(x: &Tensor, act: Activation, mode: Mode) -> Result<Tensor> {
    if fused(mode) && act != Activation::Relu {
        let mut v = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        match act {
            Activation::GeluTanh => simd::map_in_place(&mut v, simd::gelu_tanh),
            _ => simd::map_in_place(&mut v, simd::gelu_erf),
        }
        return Ok(Tensor::from_vec(v, x.dims(), x.device())?);
    }
    Ok(match act {
        Activation::Gelu => x.gelu_erf()?,
        // Written out: candle's fused `gelu` differs from `transformers`' gelu_new by ~1e-3.
        Activation::GeluTanh => {
            let c = (2.0f64 / std::f64::consts::PI).sqrt();
            let inner = ((x + (x.powf(3.0)? * 0.044715)?)? * c)?;
            ((x * 0.5)? * (inner.tanh()? + 1.0)?)?
        }
        Activation::Relu => x.relu()?,
    })
}

/// Multi-head scaled dot-product attention without a mask (no padding in Unmask's batches):
/// queries `q` `[batch, tq, hidden]` over keys and values `k`, `v` `[batch, tk, hidden]`
/// (`tq` < `tk` where only some rows' outputs are needed); heads side by side in `hidden`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, mode: Mode) -> Result<Tensor> {
    let (b, tq, h) = q.dims3()?;
    let tk = k.dim(1)?;
    let hd = h / heads;
    if fused(mode) {
        let flat = |x: &Tensor| -> Result<Vec<f32>> { Ok(x.contiguous()?.flatten_all()?.to_vec1::<f32>()?) };
        let out = attention_rows(&flat(q)?, &flat(k)?, &flat(v)?, b, tq, tk, h, heads);
        return Ok(Tensor::from_vec(out, (b, tq, h), q.device())?);
    }
    // Training: candle's ops, which carry gradients.
    let split = |y: &Tensor, t: usize| -> Result<Tensor> { Ok(y.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous()?) };
    let (q, k, v) = (split(q, tq)?, split(k, tk)?, split(v, tk)?);
    let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
    let probs = softmax_last(&scores)?;
    Ok(probs.matmul(&v)?.transpose(1, 2)?.reshape((b, tq, h))?)
}

/// [`attention`] on slices, one head at a time: the head's Q (pre-scaled), Kᵀ and V are
/// gathered into contiguous blocks for our untransposed GEMM ([`gemm::matmul_nn`]); the
/// softmax leaves its rows unnormalised and the context rows are divided by their sums instead
/// (`hd` divisions per row rather than `t`).
#[allow(clippy::too_many_arguments)]
fn attention_rows(q: &[f32], k: &[f32], v: &[f32], b: usize, tq: usize, tk: usize, h: usize, heads: usize) -> Vec<f32> {
    let hd = h / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0f32; b * tq * h];
    let (mut qh, mut kt, mut vh) = (vec![0f32; tq * hd], vec![0f32; hd * tk], vec![0f32; tk * hd]);
    let (mut scores, mut ctx, mut sums) = (vec![0f32; tq * tk], vec![0f32; tq * hd], vec![0f32; tq]);
    for bi in 0..b {
        for head in 0..heads {
            for i in 0..tq {
                let src = (bi * tq + i) * h + head * hd;
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
            for i in 0..tq {
                let dst = (bi * tq + i) * h + head * hd;
                let inv = 1.0 / sums[i];
                for (o, c) in out[dst..dst + hd].iter_mut().zip(&ctx[i * hd..(i + 1) * hd]) {
                    *o = c * inv;
                }
            }
        }
    }
    out
}

/// Log-softmax over the last dimension, from ops that all have backward passes.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}
