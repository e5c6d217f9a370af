//! AdamW with decoupled weight decay, our own so that its state (moments, step) can be saved
//! with a checkpoint and restored on resume, and gradients can be accumulated and clipped.

use candle_core::{Tensor, Var};

use crate::error::Result;

pub struct AdamW {
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: &[(String, Var)], weight_decay: f64) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            m: vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<_>>()?,
            v: vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<_>>()?,
            t: 0,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay,
        })
    }

    /// One update with learning rate `lr`. Matrices decay; biases, norms and 1-D tensors
    /// do not. Tensors without a gradient (unused by the forward pass) are not touched.
    pub fn update(&mut self, vars: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for (i, ((_, var), g)) in vars.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let m = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let step = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + self.eps)?)?;
            let w = var.as_tensor();
            let decayed = if w.rank() >= 2 { (w * (1.0 - lr * self.weight_decay))? } else { w.clone() };
            var.set(&(decayed - (step * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}
