//! Training's row-wise ops (layer norm, GELU, softmax) as differentiable candle ops
//! whose forward and backward passes split rows across the thread pool ([`super::par`]).
//!
//! Why: written from candle's basic ops (its fused layer norm and softmax record no backward
//! pass), each was 5–10 passes over the activations, every one on a single thread in wasm
//! (candle's CPU ops cannot start threads there): with the GEMMs on the pool, they were most
//! of what remained serial in a training step. Each row is computed by the same instructions
//! in the same order whichever task takes it, so results do not depend on the thread count.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};

use super::par::{self, Out};
use super::simd;

/// Rows per task.
const TASK_ROWS: usize = 16;

/// The f32 data of a contiguous operand.
pub(super) fn data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("{op}: not f32") };
    let Some((a, b)) = l.contiguous_offsets() else { bail!("{op}: not contiguous") };
    Ok(&v[a..b])
}

/// Runs `f` on the f32 data of `t` (made contiguous), read in place.
pub(super) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        candle_core::Storage::Cpu(cs) => Ok(f(data(cs, l, "training op")?)),
        _ => bail!("training ops run on the CPU"),
    }
}

/// `f(r, out)` writes row `r` (of width `w`) of the output, for every row, in tasks of
/// [`TASK_ROWS`] rows across the pool.
fn map_rows(rows: usize, w: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> candle_core::Result<Vec<f32>> {
    let write = |out: &Out| {
        par::for_each(rows.div_ceil(TASK_ROWS), |t| {
            for r in t * TASK_ROWS..((t + 1) * TASK_ROWS).min(rows) {
                // SAFETY: row r belongs to this task alone.
                f(r, unsafe { out.slice(r * w, w) });
            }
        });
        Ok(())
    };
    // SAFETY: the tasks write every row whole.
    unsafe { par::written(rows * w, write) }
}

/// Column sums of `f(r, j)` over all rows, split by blocks of columns: a task walks the rows
/// once, adding each row's stretch of its columns (contiguous in the callers' row-major
/// data) into as many running sums. Each sum runs over the rows in order, whatever the thread
/// count.
pub(super) fn column_sums(rows: usize, w: usize, f: impl Fn(usize, usize) -> f32 + Sync + Send) -> Vec<f32> {
    const COLS: usize = 16;
    let mut sums = vec![0f32; w];
    let out = Out::new(&mut sums);
    par::for_each(w.div_ceil(COLS), |t| {
        let (j0, j1) = (t * COLS, ((t + 1) * COLS).min(w));
        let mut acc = [0f32; COLS];
        for r in 0..rows {
            for (a, j) in acc.iter_mut().zip(j0..j1) {
                *a += f(r, j);
            }
        }
        out.write(j0, &acc[..j1 - j0]);
    });
    sums
}

/// A row's mean and 1 / standard deviation.
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Layer norm of the rows of `x` (`+ residual`, summed in the same pass), width
/// `gamma.len()`, in tasks of rows across the pool: training's forward and inference's (as
/// candle's sum, copy and norm they would be three serial passes on the engine's thread).
pub(crate) fn add_layer_norm(x: &[f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) -> candle_core::Result<Vec<f32>> {
    let w = gamma.len();
    if beta.len() != w || x.len() % w != 0 || residual.is_some_and(|r| r.len() != x.len()) {
        bail!("layer_norm: rows of {} (residual {:?}) against a weight of {w} and a bias of {}", x.len(), residual.map(<[f32]>::len), beta.len());
    }
    map_rows(x.len() / w, w, |r, out| {
        let row = &x[r * w..(r + 1) * w];
        let affine = gamma.iter().zip(beta);
        match residual {
            Some(res) => {
                out.iter_mut().zip(row).zip(&res[r * w..(r + 1) * w]).for_each(|((o, a), b)| *o = a + b);
                let (mean, rstd) = moments(out, eps);
                out.iter_mut().zip(affine).for_each(|(o, (g, b))| *o = (*o - mean) * rstd * g + b);
            }
            None => {
                let (mean, rstd) = moments(row, eps);
                out.iter_mut().zip(row).zip(affine).for_each(|((o, v), (g, b))| *o = (v - mean) * rstd * g + b);
            }
        }
    })
}

struct LayerNorm {
    eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "unmask-layer-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (data(s1, l1, "layer_norm")?, data(s2, l2, "layer_norm")?, data(s3, l3, "layer_norm")?);
        let y = add_layer_norm(x, None, gamma, beta, self.eps)?;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let w = gamma.elem_count();
        let rows = x.elem_count() / w;
        let gam = gamma.to_vec1::<f32>()?;
        with_data(x, |xs| with_data(g, |gs| self.grads(xs, gs, &gam, rows, w, x, gamma, beta)))??
    }
}

impl LayerNorm {
    #[allow(clippy::too_many_arguments)]
    fn grads(&self, xs: &[f32], gs: &[f32], gam: &[f32], rows: usize, w: usize, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Each row's mean and 1 / standard deviation, side by side.
        let stats = map_rows(rows, 2, |r, out| {
            let (mean, rstd) = moments(&xs[r * w..(r + 1) * w], self.eps);
            out[0] = mean;
            out[1] = rstd;
        })?;
        // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)), with dx̂ = g · γ.
        let dx = map_rows(rows, w, |r, out| {
            let (row, gr) = (&xs[r * w..(r + 1) * w], &gs[r * w..(r + 1) * w]);
            let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
            let (mut m1, mut m2) = (0f32, 0f32);
            for j in 0..w {
                let d = gr[j] * gam[j];
                m1 += d;
                m2 += d * (row[j] - mean) * rstd;
            }
            let (m1, m2) = (m1 / w as f32, m2 / w as f32);
            for j in 0..w {
                let xhat = (row[j] - mean) * rstd;
                out[j] = rstd * (gr[j] * gam[j] - m1 - xhat * m2);
            }
        })?;
        let dev = x.device();
        let dx = Tensor::from_vec(dx, x.shape(), dev)?;
        let dgamma = gamma.track_op().then(|| {
            let v = column_sums(rows, w, |r, j| gs[r * w + j] * (xs[r * w + j] - stats[2 * r]) * stats[2 * r + 1]);
            Tensor::from_vec(v, gamma.shape(), dev)
        });
        let dbeta = beta.track_op().then(|| Tensor::from_vec(column_sums(rows, w, |r, j| gs[r * w + j]), beta.shape(), dev));
        Ok((Some(dx), dgamma.transpose()?, dbeta.transpose()?))
    }
}

/// Layer norm over the last dimension of `x` with weight `gamma` and bias `beta`.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, LayerNorm { eps: eps as f32 })
}

/// GELU, exact (`tanh: false`) or the tanh approximation (`transformers`' gelu_new), on the
/// vectorised kernels inference uses ([`simd::gelu_erf`]; libm's scalar `erff` and `expf`
/// were a tenth of a fine-tuning step in Chromium).
struct Gelu {
    tanh: bool,
}

impl Gelu {
    /// `f` (the function or its slope) of the row `x` into `out`.
    fn map(&self, x: &[f32], out: &mut [f32], slope: bool) {
        out.copy_from_slice(x);
        match (self.tanh, slope) {
            (false, false) => simd::map_in_place(out, simd::gelu_erf),
            (false, true) => simd::map_in_place(out, simd::gelu_erf_slope),
            (true, false) => simd::map_in_place(out, simd::gelu_tanh),
            (true, true) => simd::map_in_place(out, simd::gelu_tanh_slope),
        }
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "unmask-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let w = (*l.dims().last().unwrap_or(&1)).max(1);
        let y = map_rows(x.len() / w, w, |r, out| self.map(&x[r * w..(r + 1) * w], out, false))?;
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let w = (*x.dims().last().unwrap_or(&1)).max(1);
        let dx = with_data(x, |xs| {
            with_data(g, |gs| {
                map_rows(xs.len() / w, w, |r, out| {
                    self.map(&xs[r * w..(r + 1) * w], out, true);
                    out.iter_mut().zip(&gs[r * w..(r + 1) * w]).for_each(|(o, g)| *o *= g);
                })
            })
        })???;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// GELU, exact or (`tanh`) the tanh approximation.
pub fn gelu(x: &Tensor, tanh: bool) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu { tanh })
}

/// Softmax over the last dimension.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "unmask-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let w = *l.dims().last().unwrap_or(&1);
        if w == 0 {
            return Ok((CpuStorage::F32(Vec::new()), l.shape().clone()));
        }
        let y = map_rows(x.len() / w, w, |r, out| {
            out.copy_from_slice(&x[r * w..(r + 1) * w]);
            let inv = 1.0 / simd::exp_shifted_row(out);
            out.iter_mut().for_each(|o| *o *= inv);
        })?;
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let w = (*y.dims().last().unwrap_or(&1)).max(1);
        // dx = y · (g − Σ g·y).
        let dx = with_data(y, |ys| with_data(g, |gs| map_rows(ys.len() / w, w, |r, out| {
            let (yr, gr) = (&ys[r * w..(r + 1) * w], &gs[r * w..(r + 1) * w]);
            let s: f32 = gr.iter().zip(yr).map(|(g, y)| g * y).sum();
            for j in 0..w {
                out[j] = yr[j] * (gr[j] - s);
            }
        })))???;
        Ok(Some(Tensor::from_vec(dx, y.shape(), y.device())?))
    }
}

/// Softmax over the last dimension.
pub fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 2e-5, "{what}: max difference {d}");
    }

    /// Forward and every gradient equal those of the same function written from candle's
    /// basic ops, under a loss that weights every output differently.
    #[test]
    fn layer_norm_matches_candles_basic_ops() {
        let dev = Device::Cpu;
        let (rows, w) = (37, 24);
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (rows, w), &dev).unwrap() + 0.5).unwrap()).unwrap();
        let gamma = Var::from_tensor(&Tensor::randn(1f32, 0.3, w, &dev).unwrap()).unwrap();
        let beta = Var::from_tensor(&Tensor::randn(0f32, 0.3, w, &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (rows, w), &dev).unwrap();
        let eps = 1e-5;
        let basic = {
            let x = x.as_tensor();
            let mean = x.mean_keepdim(D::Minus1).unwrap();
            let xc = x.broadcast_sub(&mean).unwrap();
            let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            let xn = xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap()).unwrap();
            xn.broadcast_mul(gamma.as_tensor()).unwrap().broadcast_add(beta.as_tensor()).unwrap()
        };
        let ours = layer_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), eps).unwrap();
        close(&ours, &basic, "forward");
        let loss = |y: &Tensor| (y.tanh().unwrap() * &weights).unwrap().sum_all().unwrap();
        let (go, gb) = (loss(&ours).backward().unwrap(), loss(&basic).backward().unwrap());
        for (v, what) in [(&x, "dx"), (&gamma, "dgamma"), (&beta, "dbeta")] {
            close(go.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap(), what);
        }
    }

    /// Log-softmax from candle's basic ops.
    fn basic_log_softmax(t: &Tensor) -> Tensor {
        let shifted = t.broadcast_sub(&t.max_keepdim(D::Minus1).unwrap().detach()).unwrap();
        shifted.broadcast_sub(&shifted.exp().unwrap().sum_keepdim(D::Minus1).unwrap().log().unwrap()).unwrap()
    }

    #[test]
    fn softmax_matches_candles_basic_ops() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 3.0, (2, 19, 33), &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (2, 19, 33), &dev).unwrap();
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let t = x.as_tensor();
        let basic = basic_log_softmax(t).exp().unwrap();
        let ours = softmax(t).unwrap();
        close(&ours, &basic, "softmax");
        let (go, gb) = (loss(&ours).backward().unwrap(), loss(&basic).backward().unwrap());
        close(go.get(t).unwrap(), gb.get(t).unwrap(), "softmax gradient");
    }

    #[test]
    fn gelu_matches_candles_ops() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (7, 45), &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (7, 45), &dev).unwrap();
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let t = x.as_tensor();
        let c = (2.0f64 / std::f64::consts::PI).sqrt();
        let tanh = ((t * 0.5).unwrap() * (((t + (t.powf(3.0).unwrap() * 0.044715).unwrap()).unwrap() * c).unwrap().tanh().unwrap() + 1.0).unwrap()).unwrap();
        for (ours, basic, what) in [(gelu(t, false).unwrap(), t.gelu_erf().unwrap(), "gelu"), (gelu(t, true).unwrap(), tanh, "gelu_new")] {
            close(&ours, &basic, what);
            let (go, gb) = (loss(&ours).backward().unwrap(), loss(&basic).backward().unwrap());
            close(go.get(t).unwrap(), gb.get(t).unwrap(), &format!("{what} gradient"));
        }
    }

    #[test]
    fn a_frozen_norm_gets_no_weight_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 8), &dev).unwrap()).unwrap();
        let (gamma, beta) = (Tensor::ones(8, candle_core::DType::F32, &dev).unwrap(), Tensor::zeros(8, candle_core::DType::F32, &dev).unwrap());
        let g = layer_norm(x.as_tensor(), &gamma, &beta, 1e-5).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&gamma).is_none() && g.get(&beta).is_none());
    }
}
