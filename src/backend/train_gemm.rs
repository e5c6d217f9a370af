//! Our GEMM ([`super::gemm`]) as a differentiable candle op, so that training's linears run on
//! the same kernel and thread pool as inference. Candle's matmul in wasm32 is serial (its
//! thread count comes from `num_cpus`, 1 there) and ~3× slower than ours on one thread.
//!
//! Forward `y = a · bᵀ` (`a [m × k]` activations, `b [n × k]` a weight as stored); backward
//! `da = g · b` and `db = gᵀ · a`, each again one `· ᵀ` product (cache-blocked) of transposed
//! copies, made across the pool ([`gemm::transpose`]: through candle they were a
//! single-threaded third of a training step's backward). The copies are O(m·k), the products
//! O(m·n·k). The weight's gradient is skipped when the weight is frozen, and
//! the input's when nothing below it trains.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::train_rows::with_data;
use super::{gemm, par};

struct MatmulT;

/// The f32 data of a contiguous 2-D operand and its dims.
fn operand<'a>(s: &'a CpuStorage, l: &Layout, which: &str) -> candle_core::Result<(&'a [f32], usize, usize)> {
    let CpuStorage::F32(data) = s else { bail!("matmul_t: {which} is not f32") };
    let (r, c) = l.shape().dims2()?;
    let Some((start, end)) = l.contiguous_offsets() else { bail!("matmul_t: {which} is not contiguous") };
    Ok((&data[start..end], r, c))
}

impl CustomOp2 for MatmulT {
    fn name(&self) -> &'static str {
        "unmask-matmul-t"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, m, k) = operand(s1, l1, "a")?;
        let (b, n, kb) = operand(s2, l2, "b")?;
        if k != kb {
            bail!("matmul_t: a is {m}×{k} but b is {n}×{kb}");
        }
        // SAFETY: matmul_t writes all m × n outputs.
        let out = unsafe { super::par::written(m * n, |out| Ok::<_, candle_core::Error>(gemm::matmul_t(a, b, None, m, k, n, out))) }?;
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ((m, k), n) = (a.dims2()?, b.dim(0)?);
        // da [m × k] = g · b = g · (bᵀ)ᵀ; none for an input that needs none (a frozen layer's).
        let da = match a.track_op() {
            true => Some(with_data(g, |gs| with_data(b, |bs| product_t(gs, &transposed(bs, n, k)?, m, n, k)))???),
            false => None,
        };
        // db [n × k] = gᵀ · a = gᵀ · (aᵀ)ᵀ
        let db = match b.track_op() {
            true => Some(with_data(g, |gs| with_data(a, |xs| product_t(&transposed(gs, m, n)?, &transposed(xs, m, k)?, n, m, k)))???),
            false => None,
        };
        let dev = a.device();
        Ok((da.map(|v| Tensor::from_vec(v, (m, k), dev)).transpose()?, db.map(|v| Tensor::from_vec(v, (n, k), dev)).transpose()?))
    }
}

/// `x[r × c]ᵀ`, across the pool.
fn transposed(x: &[f32], r: usize, c: usize) -> candle_core::Result<Vec<f32>> {
    // SAFETY: transpose writes all r × c outputs.
    unsafe { par::written(r * c, |o| Ok(gemm::transpose(x, r, c, o))) }
}

/// `x[m × k] · w[n × k]ᵀ`, across the pool.
fn product_t(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> candle_core::Result<Vec<f32>> {
    // SAFETY: matmul_t writes all m × n outputs.
    unsafe { par::written(m * n, |o| Ok(gemm::matmul_t(x, w, None, m, k, n, o))) }
}

/// `a · bᵀ` for f32 `a [m × k]` and `b [n × k]`, with gradients for both.
pub fn matmul_t(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, MatmulT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Gradients of a scalar loss through our op equal those through candle's matmul.
    #[test]
    fn forward_and_gradients_match_candles_matmul() {
        let dev = Device::Cpu;
        // More rows and columns than one task of the backward's products and transpose.
        let (m, k, n) = (101, 29, 53);
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (m, n), &dev).unwrap();
        let loss = |y: Tensor| (y.tanh().unwrap() * &w).unwrap().sum_all().unwrap();
        let ours = matmul_t(&a, &b).unwrap();
        let theirs = a.matmul(&b.t().unwrap()).unwrap();
        let close = |x: &Tensor, y: &Tensor, what: &str| {
            let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "{what}: max difference {d}");
        };
        close(&ours, &theirs, "forward");
        let (go, gt) = (loss(ours).backward().unwrap(), loss(theirs).backward().unwrap());
        close(go.get(&a).unwrap(), gt.get(&a).unwrap(), "da");
        close(go.get(&b).unwrap(), gt.get(&b).unwrap(), "db");
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap()).unwrap();
        let b = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let grads = matmul_t(&a, &b).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&a).is_some());
        assert!(grads.get(&b).is_none());
    }
}
