//! CPU implementations of the encoder's non-matmul ops.

use candle_core::{Tensor, D};

use super::Mode;
use crate::error::Result;
use crate::model::config::Activation;

/// `x · Wᵀ + b` over the last dimension of `x` (`W` is `[out, in]`). Inference goes through
/// our kernel where it is the faster one; training keeps candle's differentiable matmul.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, mode: Mode) -> Result<Tensor> {
    if mode == Mode::Inference && super::gemm::own_enabled() {
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

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference => Ok(candle_nn::ops::softmax_last_dim(&x.contiguous()?)?),
        Mode::Train => {
            let max = x.max_keepdim(D::Minus1)?.detach();
            let e = x.broadcast_sub(&max)?.exp()?;
            let sum = e.sum_keepdim(D::Minus1)?;
            Ok(e.broadcast_div(&sum)?)
        }
    }
}

pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
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

/// Log-softmax over the last dimension, from ops that all have backward passes.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}
