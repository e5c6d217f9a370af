//! AdamW with decoupled weight decay, our own so that its state (moments, step) can be saved
//! with a checkpoint and restored on resume, and gradients can be accumulated and clipped.

use candle_core::{bail, CpuStorage, InplaceOp1, Layout, Tensor, Var};

use crate::backend::cpu::with_f32;
use crate::backend::par::{self, Out};
use crate::error::Result;

pub struct AdamW {
    /// The first and second moments of each variable, in its elements' order.
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: &[(String, Var)], weight_decay: f64) -> Result<Self> {
        let zeros = || vars.iter().map(|(_, v)| vec![0f32; v.elem_count()]).collect();
        Ok(Self { m: zeros(), v: zeros(), t: 0, beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay })
    }

    /// One update with learning rate `lr`, each gradient multiplied by `grad_scale` first (the
    /// clip). Matrices decay; biases, norms and 1-D tensors do not. Tensors without a
    /// gradient (unused by the forward pass) are not touched.
    ///
    /// One pass per tensor across the pool, writing the weights and moments in place: as
    /// candle ops the same arithmetic is a dozen serial passes per tensor on the engine's
    /// thread; new tensors handed to `Var::set` would be one more serial copy and three
    /// tensors' worth of memory at once (a full fine-tune's wasm memory peaks 25 MB lower).
    /// Each element is its own computation, so the result does not depend on the thread count.
    pub fn update(&mut self, vars: &[(String, Var)], grads: &[Option<Tensor>], lr: f64, grad_scale: f64) -> Result<()> {
        self.t += 1;
        let c = Constants {
            b1: self.beta1 as f32,
            b2: self.beta2 as f32,
            bc1: (1.0 - self.beta1.powi(self.t as i32)) as f32,
            bc2: (1.0 - self.beta2.powi(self.t as i32)) as f32,
            eps: self.eps as f32,
            lr: lr as f32,
            gs: grad_scale as f32,
            decay: 1.0,
        };
        for (i, ((_, var), g)) in vars.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let w = var.as_tensor();
            let c = Constants { decay: if w.rank() >= 2 { (1.0 - lr * self.weight_decay) as f32 } else { 1.0 }, ..c };
            let (m, v) = (Out::new(&mut self.m[i]), Out::new(&mut self.v[i]));
            with_f32(g, |g| w.inplace_op1(&InPlace { g, m: &m, v: &v, c }))??;
        }
        Ok(())
    }
}

/// One tensor's update, in place on the variable's storage ([`AdamW::update`]).
struct InPlace<'a> {
    g: &'a [f32],
    m: &'a Out<f32>,
    v: &'a Out<f32>,
    c: Constants,
}

impl InplaceOp1 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "unmask-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(data), Some((a, b))) = (storage, layout.contiguous_offsets()) else { bail!("adamw: a variable is not contiguous f32") };
        let n = b - a;
        if self.g.len() != n || self.m.len() != n || self.v.len() != n {
            bail!("adamw: a variable of {n} elements has a gradient of {} and moments of {}", self.g.len(), self.m.len());
        }
        let w = Out::new(&mut data[a..b]);
        par::for_each(n.div_ceil(CHUNK), |t| {
            let (at, len) = (t * CHUNK, CHUNK.min(n - t * CHUNK));
            // SAFETY: each task owns its range of the weights and of both moments.
            let (w, m, v) = unsafe { (w.slice(at, len), self.m.slice(at, len), self.v.slice(at, len)) };
            self.c.apply(w, &self.g[at..at + len], m, v);
        });
        Ok(())
    }
}

/// `Σ x²` over a tensor, as partial sums of fixed runs across the pool added in order (the
/// same bits with any thread count): the gradient norm, one pass per tensor.
pub fn sum_of_squares(t: &Tensor) -> Result<f32> {
    let n = t.elem_count();
    let mut partial = vec![0f32; n.div_ceil(CHUNK)];
    let out = Out::new(&mut partial);
    with_f32(t, |x| {
        par::for_each(n.div_ceil(CHUNK), |c| {
            let s = x[c * CHUNK..((c + 1) * CHUNK).min(n)].iter().map(|v| v * v).sum();
            out.set(c, s);
        })
    })?;
    Ok(partial.iter().sum())
}

/// Elements per task of [`AdamW::update`].
const CHUNK: usize = 1 << 12;

/// One update's constants for one tensor.
#[derive(Clone, Copy)]
struct Constants {
    b1: f32,
    b2: f32,
    /// The moments' bias corrections, `1 − βᵗ`.
    bc1: f32,
    bc2: f32,
    eps: f32,
    lr: f32,
    /// The gradient's scale (the clip).
    gs: f32,
    /// `1 − lr · weight decay` for a matrix, else 1.
    decay: f32,
}

impl Constants {
    /// New weights and moments of a run of elements, in place.
    fn apply(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for i in 0..w.len() {
            let g = g[i] * self.gs;
            let mi = self.b1 * m[i] + (1.0 - self.b1) * g;
            let vi = self.b2 * v[i] + (1.0 - self.b2) * (g * g);
            let step = (mi / self.bc1) / ((vi / self.bc2).sqrt() + self.eps);
            w[i] = w[i] * self.decay - self.lr * step;
            m[i] = mi;
            v[i] = vi;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused update equals AdamW written with candle's ops (as it was), for a matrix (which
    /// decays) and a vector (which does not), over three steps with a clipped gradient.
    #[test]
    fn the_fused_update_equals_adamw_in_candle_ops() {
        let dev = Device::Cpu;
        let shapes: [&[usize]; 2] = [&[37, 1000], &[70]];
        let vars: Vec<(String, Var)> = shapes.iter().map(|s| ("w".to_string(), Var::from_tensor(&Tensor::randn(0f32, 1.0, *s, &dev).unwrap()).unwrap())).collect();
        let mut reference: Vec<Tensor> = vars.iter().map(|(_, v)| v.as_tensor().copy().unwrap()).collect();
        let mut adam = AdamW::new(&vars, 0.01).unwrap();
        let zeros = |s: &[usize]| Tensor::zeros(s, candle_core::DType::F32, &dev).unwrap();
        let (mut m, mut v): (Vec<Tensor>, Vec<Tensor>) = (shapes.iter().map(|s| zeros(s)).collect(), shapes.iter().map(|s| zeros(s)).collect());
        let (lr, gs) = (3e-3, 0.5);
        for t in 1..=3 {
            let grads: Vec<Option<Tensor>> = shapes.iter().map(|s| Some(Tensor::randn(0f32, 1.0, *s, &dev).unwrap())).collect();
            adam.update(&vars, &grads, lr, gs).unwrap();
            let (bc1, bc2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.98f64.powi(t));
            for i in 0..2 {
                let g = (grads[i].as_ref().unwrap() * gs).unwrap();
                m[i] = ((&m[i] * 0.9).unwrap() + (&g * 0.1).unwrap()).unwrap();
                v[i] = ((&v[i] * 0.98).unwrap() + (g.sqr().unwrap() * 0.02).unwrap()).unwrap();
                let step = ((&m[i] / bc1).unwrap() / ((&v[i] / bc2).unwrap().sqrt().unwrap() + 1e-6).unwrap()).unwrap();
                let w = &reference[i];
                let decayed = if w.rank() >= 2 { (w * (1.0 - lr * 0.01)).unwrap() } else { w.clone() };
                reference[i] = (decayed - (step * lr).unwrap()).unwrap();
            }
        }
        for i in 0..2 {
            let d = (vars[i].1.as_tensor() - &reference[i]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-6, "tensor {i}: max difference {d}");
            for (got, want) in [(&adam.m[i], &m[i]), (&adam.v[i], &v[i])] {
                let d = (Tensor::from_slice(got, shapes[i], &dev).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-6, "tensor {i}: moments differ by {d}");
            }
        }
        let g = Tensor::randn(0f32, 1.0, (3, 40_000), &dev).unwrap();
        let want = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((sum_of_squares(&g).unwrap() - want).abs() < 1e-3 * want);
    }
}
