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

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::int8::{self, QWeights};
use super::train_rows::{column_sums, data, with_data};
use super::gemm::{self, transposed};
use super::{par, simd};

struct MatmulT;

/// `x · wᵀ + b` as one graph node (see [`linear`]).
struct LinearT;

/// The f32 data of a contiguous 2-D operand and its dims.
fn operand<'a>(s: &'a CpuStorage, l: &Layout, which: &str) -> candle_core::Result<(&'a [f32], usize, usize)> {
    let CpuStorage::F32(data) = s else { bail!("matmul_t: {which} is not f32") };
    let (r, c) = l.shape().dims2()?;
    let Some((start, end)) = l.contiguous_offsets() else { bail!("matmul_t: {which} is not contiguous") };
    Ok((&data[start..end], r, c))
}

/// `x · wᵀ (+ bias)` for contiguous `x [..., k]` (leading dims flattened into `m` rows) and
/// `w [n × k]`: the output, shaped `[..., n]`.
fn forward(s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, bias: Option<&[f32]>) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = data(s1, l1, "matmul_t: x")?;
    let (w, n, k) = operand(s2, l2, "w")?;
    let mut dims = l1.dims().to_vec();
    if dims.last() != Some(&k) || bias.is_some_and(|b| b.len() != n) {
        bail!("matmul_t: x is {dims:?} but w is {n}×{k}");
    }
    *dims.last_mut().expect("checked above") = n;
    let m = x.len() / k;
    // SAFETY: matmul_t writes all m × n outputs.
    let out = unsafe { par::written(m * n, |out| Ok::<_, candle_core::Error>(gemm::matmul_t(x, w, bias, m, k, n, out))) }?;
    Ok((CpuStorage::F32(out), Shape::from(dims)))
}

/// The gradients of `y = x · wᵀ (+ b)` for the output's gradient `g`: `dx = g · w` (shaped as
/// `x`) and `dw = gᵀ · x`, each again one `· ᵀ` product of transposed copies; none for an
/// input that needs none (a frozen weight, or the input of the lowest trained layer).
fn grads(x: &Tensor, w: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let (n, k) = w.dims2()?;
    let m = x.elem_count() / k;
    let dx = match x.track_op() {
        true => Some(with_data(g, |gs| with_data(w, |ws| product_t(gs, &transposed(ws, n, k), m, n, k)))???),
        false => None,
    };
    let dw = match w.track_op() {
        true => Some(with_data(g, |gs| with_data(x, |xs| product_t(&transposed(gs, m, n), &transposed(xs, m, k), n, m, k)))???),
        false => None,
    };
    let dev = x.device();
    Ok((dx.map(|v| Tensor::from_vec(v, x.shape(), dev)).transpose()?, dw.map(|v| Tensor::from_vec(v, (n, k), dev)).transpose()?))
}

impl CustomOp2 for MatmulT {
    fn name(&self) -> &'static str {
        "unmask-matmul-t"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        forward(s1, l1, s2, l2, None)
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        grads(a, b, g)
    }
}

impl CustomOp3 for LinearT {
    fn name(&self) -> &'static str {
        "unmask-linear-t"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        forward(s1, l1, s2, l2, Some(data(s3, l3, "matmul_t: bias")?))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = grads(x, w, g)?;
        let n = b.elem_count();
        let db = match b.track_op() {
            true => Some(Tensor::from_vec(with_data(g, |gs| column_sums(gs.len() / n, n, |r, j| gs[r * n + j]))?, b.shape(), b.device())?),
            false => None,
        };
        Ok((dx, dw, db))
    }
}

/// `x[m × k] · w[n × k]ᵀ`, across the pool.
fn product_t(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> candle_core::Result<Vec<f32>> {
    // SAFETY: matmul_t writes all m × n outputs.
    unsafe { par::written(m * n, |o| Ok(gemm::matmul_t(x, w, None, m, k, n, o))) }
}

/// `a[m × p]ᵀ · b[m × q]`, across the pool.
fn product_tn(a: &[f32], b: &[f32], m: usize, p: usize, q: usize) -> candle_core::Result<Vec<f32>> {
    // SAFETY: matmul_tn writes all p × q outputs.
    unsafe { par::written(p * q, |o| Ok(gemm::matmul_tn(a, b, m, p, q, o))) }
}

/// `x · wᵀ (+ b)` for f32 `x [..., k]`, `w [n × k]`, `b [n]`, with gradients for all three, as
/// one node of candle's graph: through candle, the reshapes in and out and the bias were three
/// more, and its backward gives each node's gradient a zeroed tensor and adds to it, serially
/// on the engine's thread (a tenth of a tiny model's step, `bench/RESULTS.md`).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, LinearT),
        None => x.apply_op2(&w, MatmulT),
    }
}

/// A weight as the training ops read it for their products with it (`x · Wᵀ` forward,
/// `g · W` backward): f32 `W [out × in]`, or, for a frozen weight stored quantized where
/// inference uses the integer kernel (wasm), that kernel's forms of `W` and `Wᵀ`: the products
/// run on its 8-bit dot, with the activations or gradients quantized per row and group of 32
/// as inference quantizes its activations.
#[derive(Clone)]
pub enum WeightView {
    F32(Tensor),
    Int8 { w: Arc<QWeights>, wt: Arc<QWeights> },
}

impl WeightView {
    /// `(out, in)`.
    fn dims(&self) -> candle_core::Result<(usize, usize)> {
        match self {
            Self::F32(w) => w.dims2(),
            Self::Int8 { w, .. } => Ok((w.n, w.k)),
        }
    }

    /// `x · Wᵀ (+ bias)`, `[m × out]`.
    fn forward(&self, x: &[f32], bias: Option<&[f32]>, m: usize) -> candle_core::Result<Vec<f32>> {
        let (n, k) = self.dims()?;
        match self {
            Self::F32(w) => with_data(w, |w| {
                // SAFETY: matmul_t writes all m × n outputs.
                unsafe { par::written(m * n, |o| Ok::<_, candle_core::Error>(gemm::matmul_t(x, w, bias, m, k, n, o))) }
            })?,
            // SAFETY: matmul_q writes all m × n outputs.
            Self::Int8 { w, .. } => unsafe { par::written(m * n, |o| Ok(int8::matmul_q(x, w, bias, m, o))) },
        }
    }

    /// `g · W`, `[m × in]`, for `g [m × out]`.
    fn backward(&self, g: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let (n, k) = self.dims()?;
        match self {
            Self::F32(w) => with_data(w, |ws| product_t(g, &transposed(ws, n, k), m, n, k))?,
            // SAFETY: matmul_q writes all m × k outputs.
            Self::Int8 { wt, .. } => unsafe { par::written(m * k, |o| Ok(int8::matmul_q(g, wt, None, m, o))) },
        }
    }
}

/// A frozen linear with a trained low-rank update (LoRA), `y = x · Wᵀ + b + s · (x · Aᵀ) · Bᵀ`,
/// as one op of `x [m × in]`, `A [r × in]` and `B [out × r]`: the update is added into the
/// linear's output buffer rather than kept as two more `[m × out]` tensors for the backward.
/// `W` and `b` get no gradient.
struct LoraLinear {
    w: WeightView,
    bias: Option<Tensor>,
    scale: f32,
}

impl LoraLinear {
    /// `s · x · Aᵀ`, `[m × r]`.
    fn low(&self, x: &[f32], a: &[f32], m: usize, k: usize, r: usize) -> candle_core::Result<Vec<f32>> {
        let mut low = product_t(x, a, m, k, r)?;
        low.iter_mut().for_each(|v| *v *= self.scale);
        Ok(low)
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "unmask-lora-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, m, k) = operand(s1, l1, "x")?;
        let (a, r, ka) = operand(s2, l2, "a")?;
        let (b, n, rb) = operand(s3, l3, "b")?;
        let (wn, wk) = self.w.dims()?;
        if (ka, rb, wn, wk) != (k, r, n, k) {
            bail!("lora_linear: x {m}×{k}, A {r}×{ka}, B {n}×{rb}, W {wn}×{wk}");
        }
        let bias = self.bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?;
        let mut y = self.w.forward(x, bias.as_deref(), m)?;
        gemm::add_matmul_nn(&self.low(x, a, m, k, r)?, &transposed(b, n, r), m, r, n, &par::Out::new(&mut y));
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    /// With `gB = s · g · B`: `dx = g · W + gB · A`, `dA = gBᵀ · x`, `dB = gᵀ · (s · x · Aᵀ)`.
    #[allow(clippy::type_complexity)]
    fn bwd(&self, x: &Tensor, a: &Tensor, b: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ((m, k), (r, n)) = (x.dims2()?, (a.dim(0)?, b.dim(0)?));
        let dev = x.device();
        let (dx, da, db) = with_data(g, |gs| {
            with_data(x, |xs| {
                with_data(a, |as_| {
                    with_data(b, |bs| -> candle_core::Result<_> {
                        // s · g · B: the scale applied once here, on `m × r` values.
                        let mut gb = product_t(gs, &transposed(bs, n, r), m, n, r)?;
                        gb.iter_mut().for_each(|v| *v *= self.scale);
                        let dx = match x.track_op() {
                            true => {
                                let mut dx = self.w.backward(gs, m)?;
                                gemm::add_matmul_nn(&gb, as_, m, r, k, &par::Out::new(&mut dx));
                                Some(dx)
                            }
                            false => None,
                        };
                        let da = product_tn(&gb, xs, m, r, k)?;
                        let low = self.low(xs, as_, m, k, r)?;
                        // dB = gᵀ · low, as (lowᵀ · g)ᵀ: the reduction split across the pool by
                        // B's `out` rows rather than its rank columns.
                        let db = transposed(&product_tn(&low, gs, m, r, n)?, r, n);
                        Ok((dx, da, db))
                    })
                })
            })
        })?????;
        Ok((
            dx.map(|v| Tensor::from_vec(v, (m, k), dev)).transpose()?,
            Some(Tensor::from_vec(da, (r, k), dev)?),
            Some(Tensor::from_vec(db, (n, r), dev)?),
        ))
    }
}

/// `x · Wᵀ + b + scale · (x · Aᵀ) · Bᵀ` for rows `x [m × in]`, a frozen `W [out × in]` and
/// bias, with gradients for `x`, `A [r × in]` and `B [out × r]`.
pub fn lora_linear(x: &Tensor, w: WeightView, bias: Option<&Tensor>, a: &Tensor, b: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    let w = match w {
        WeightView::F32(w) => WeightView::F32(w.contiguous()?),
        q => q,
    };
    let op = LoraLinear { w, bias: bias.cloned(), scale: scale as f32 };
    x.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, op)
}

/// A linear layer and the cross-entropy of its rows against targets, as one op: the
/// `[rows × vocab]` logits live in one buffer, which the forward turns into the softmax and the
/// backward into the logits' gradient, instead of logits, biased logits, their gradient and the
/// softmax's each in a tensor of their own (an MLM head over a large vocabulary: most of a
/// training step's memory).
struct LinearCrossEntropy {
    /// The weight's products (its gradient, when it trains, is taken from the f32 input).
    w: WeightView,
    targets: Vec<u32>,
    /// The forward's softmax, for the backward (taken by it).
    probs: std::sync::Mutex<Option<Vec<f32>>>,
}

/// Rows per task of the softmax.
const CE_ROWS: usize = 8;

impl CustomOp3 for LinearCrossEntropy {
    fn name(&self) -> &'static str {
        "unmask-linear-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, rows, k) = operand(s1, l1, "x")?;
        let (_, n, kw) = operand(s2, l2, "w")?;
        let CpuStorage::F32(b) = s3 else { bail!("linear_cross_entropy: bias is not f32") };
        let Some((b0, b1)) = l3.contiguous_offsets() else { bail!("linear_cross_entropy: bias is not contiguous") };
        let b = &b[b0..b1];
        if k != kw || b.len() != n || rows != self.targets.len() || self.targets.iter().any(|&t| t as usize >= n) {
            bail!("linear_cross_entropy: x {rows}×{k}, w {n}×{kw}, bias {}, {} targets (all below {n})", b.len(), self.targets.len());
        }
        let mut p = self.w.forward(x, Some(b), rows)?;
        let mut ce = vec![0f32; rows];
        let (probs, losses) = (par::Out::new(&mut p), par::Out::new(&mut ce));
        par::for_each(rows.div_ceil(CE_ROWS), |task| {
            for r in task * CE_ROWS..((task + 1) * CE_ROWS).min(rows) {
                // SAFETY: row r belongs to this task alone.
                let row = unsafe { probs.slice(r * n, n) };
                let (target, max) = (row[self.targets[r] as usize], row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                let sum = simd::exp_shifted_row(row);
                losses.set(r, max + sum.ln() - target);
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|v| *v *= inv);
            }
        });
        *self.probs.lock().expect("not poisoned") = Some(p);
        Ok((CpuStorage::F32(ce), Shape::from(rows)))
    }

    /// With `G = g · (softmax − one-hot)`: `dx = G · w`, `dw = Gᵀ · x`, `db = Σ_rows G`, each
    /// only for an input that trains or passes gradients on.
    #[allow(clippy::type_complexity)]
    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _ce: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ((rows, k), n) = (x.dims2()?, w.dim(0)?);
        let Some(mut grad) = self.probs.lock().expect("not poisoned").take() else {
            bail!("linear_cross_entropy: a second backward through the same forward")
        };
        let gs = g.to_vec1::<f32>()?;
        let out = par::Out::new(&mut grad);
        par::for_each(rows.div_ceil(CE_ROWS), |task| {
            for r in task * CE_ROWS..((task + 1) * CE_ROWS).min(rows) {
                // SAFETY: row r belongs to this task alone.
                let row = unsafe { out.slice(r * n, n) };
                row.iter_mut().for_each(|v| *v *= gs[r]);
                row[self.targets[r] as usize] -= gs[r];
            }
        });
        let dev = x.device();
        let dx = match x.track_op() {
            true => Some(Tensor::from_vec(self.w.backward(&grad, rows)?, (rows, k), dev)?),
            false => None,
        };
        let dw = match w.track_op() {
            true => Some(Tensor::from_vec(with_data(x, |xs| product_t(&transposed(&grad, rows, n), &transposed(xs, rows, k), n, rows, k))??, (n, k), dev)?),
            false => None,
        };
        let db = match b.track_op() {
            true => Some(Tensor::from_vec(column_sums(rows, n, |r, j| grad[r * n + j]), n, dev)?),
            false => None,
        };
        Ok((dx, dw, db))
    }
}

/// Cross-entropy `[rows]` of the rows of `x · wᵀ + b` (`x [rows × k]`, `w [n × k]`) against
/// `targets`, with gradients for `x`, `w` and `b`; `view`, when given, is how the products read
/// a frozen `w` (else in f32).
pub fn linear_cross_entropy(x: &Tensor, w: &Tensor, view: Option<WeightView>, b: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    if view.is_some() && w.track_op() {
        bail!("linear_cross_entropy: a trained weight is read in f32");
    }
    let w = w.contiguous()?;
    let op = LinearCrossEntropy { w: view.unwrap_or_else(|| WeightView::F32(w.clone())), targets: targets.to_vec(), probs: Default::default() };
    x.contiguous()?.apply_op3(&w, &b.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// `x` and `y` agree to 1e-4 everywhere.
    fn close(x: &Tensor, y: &Tensor, what: &str) {
        let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-4, "{what}: max difference {d}");
    }

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
        let ours = linear(&a, &b, None).unwrap();
        let theirs = a.matmul(&b.t().unwrap()).unwrap();
        close(&ours, &theirs, "forward");
        let (go, gt) = (loss(ours).backward().unwrap(), loss(theirs).backward().unwrap());
        close(go.get(&a).unwrap(), gt.get(&a).unwrap(), "da");
        close(go.get(&b).unwrap(), gt.get(&b).unwrap(), "db");
    }

    /// The linear as one node equals candle's matmul and bias on a batch of sequences, forward
    /// and every gradient.
    #[test]
    fn linear_matches_candles_matmul_and_bias() {
        let dev = Device::Cpu;
        let (b, t, k, n) = (3, 37, 29, 53);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, k), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 1.0, n, &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (b, t, n), &dev).unwrap();
        let loss = |y: &Tensor| (y.tanh().unwrap() * &weights).unwrap().sum_all().unwrap();
        let ours = linear(&x, &w, Some(&bias)).unwrap();
        let theirs = x.broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        close(&ours, &theirs, "forward");
        let (go, gt) = (loss(&ours).backward().unwrap(), loss(&theirs).backward().unwrap());
        for (v, what) in [(&x, "dx"), (&w, "dw"), (&bias, "db")] {
            close(go.get(v.as_tensor()).unwrap(), gt.get(v.as_tensor()).unwrap(), what);
        }
    }

    /// The fused head equals matmul + bias + cross-entropy written from candle's basic ops,
    /// forward and every gradient, under a loss that weights each row differently.
    #[test]
    fn linear_cross_entropy_matches_candles_ops() {
        let dev = Device::Cpu;
        let (rows, k, n) = (19, 24, 70);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, k), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, n, &dev).unwrap()).unwrap();
        let targets: Vec<u32> = (0..rows as u32).map(|r| r * 11 % n as u32).collect();
        let weights = Tensor::randn(0f32, 1.0, rows, &dev).unwrap();
        let ours = linear_cross_entropy(&x, &w, None, &b, &targets).unwrap();
        let logits = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let logp = candle_nn::ops::log_softmax(&logits, 1).unwrap();
        let idx = Tensor::new(targets.as_slice(), &dev).unwrap().unsqueeze(1).unwrap();
        let theirs = logp.gather(&idx, 1).unwrap().squeeze(1).unwrap().neg().unwrap();
        let close = |p: &Tensor, q: &Tensor, what: &str| {
            let d = (p - q).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let scale = q.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
            assert!(d < 1e-4 * scale, "{what}: max difference {d} (scale {scale})");
        };
        close(&ours, &theirs, "cross-entropy");
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let (go, gt) = (loss(&ours).backward().unwrap(), loss(&theirs).backward().unwrap());
        for (v, what) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
            close(go.get(v).unwrap(), gt.get(v).unwrap(), what);
        }
        assert!(linear_cross_entropy(&x, &w, None, &b, &[n as u32; 19]).is_err(), "a target outside the vocabulary");
    }

    /// The fused LoRA linear equals the frozen linear plus the low-rank product written from
    /// candle's ops, forward and the gradients of x, A and B.
    #[test]
    fn lora_linear_matches_candles_ops() {
        let dev = Device::Cpu;
        let (m, k, n, r) = (37, 24, 45, 3);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (r, k), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, r), &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (m, n), &dev).unwrap();
        let ours = lora_linear(&x, WeightView::F32(w.clone()), Some(&bias), &a, &b, 1.5).unwrap();
        let low = (x.matmul(&a.t().unwrap()).unwrap() * 1.5).unwrap();
        let theirs = (x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&bias).unwrap() + low.matmul(&b.t().unwrap()).unwrap()).unwrap();
        close(&ours, &theirs, "forward");
        let loss = |y: &Tensor| (y.tanh().unwrap() * &weights).unwrap().sum_all().unwrap();
        let (go, gt) = (loss(&ours).backward().unwrap(), loss(&theirs).backward().unwrap());
        for (v, what) in [(&x, "dx"), (&a, "dA"), (&b, "dB")] {
            close(go.get(v).unwrap(), gt.get(v).unwrap(), what);
        }
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap()).unwrap();
        let b = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let grads = linear(&a, &b, None).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&a).is_some());
        assert!(grads.get(&b).is_none());
    }
}
