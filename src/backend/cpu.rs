//! CPU implementations of the encoder's non-matmul ops.

use candle_core::{Tensor, D};

use super::Mode;
use crate::error::Result;
use crate::model::config::Activation;

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
