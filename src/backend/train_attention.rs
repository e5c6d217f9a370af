//! Training's attention as one differentiable op: one task per (sequence, head) across the
//! pool, forward and backward, on our untransposed GEMM ([`gemm::matmul_nn`]). Through
//! candle's batched matmul it ran on one thread in wasm (its own pool has one there), with the
//! head split and merge as strided copies around it: serial work that kept a fine-tuning step's
//! second thread waiting.
//!
//! Forward, per head: `P = softmax(s · Q Kᵀ)`, `C = P V` with `s = 1/√hd`. Backward from `G`:
//! `dV = Pᵀ G`, `dP = G Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = s · dS K`,
//! `dK = s · dSᵀ Q`. The forward keeps `P` for the backward.

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::par::{self, Out};
use super::train_rows::{data, with_data};
use super::{gemm, simd};

struct Attention {
    heads: usize,
    /// Per (sequence, head), the forward's `P [tq × tk]` (taken by the backward).
    probs: std::sync::Mutex<Option<Vec<f32>>>,
}


/// Rows `t` of one head (`hd` columns from `head · hd`) of sequence `bi` of `x [b, t, h]`, as a
/// `[t × hd]` block, or transposed (`[hd × t]`).
fn gather(x: &[f32], bi: usize, t: usize, h: usize, col: usize, hd: usize, transpose: bool) -> Vec<f32> {
    let mut out = vec![0f32; t * hd];
    for i in 0..t {
        let src = &x[(bi * t + i) * h + col..(bi * t + i) * h + col + hd];
        if transpose {
            src.iter().enumerate().for_each(|(d, &v)| out[d * t + i] = v);
        } else {
            out[i * hd..(i + 1) * hd].copy_from_slice(src);
        }
    }
    out
}

/// `x [r × c]ᵀ`.
fn transposed(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = x[i * c + j];
        }
    }
    out
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "unmask-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((b, tq, h), (bk, tk, hk), vd) = (l1.shape().dims3()?, l2.shape().dims3()?, l3.shape().dims3()?);
        if (bk, hk) != (b, h) || vd != (b, tk, h) || h % self.heads != 0 {
            bail!("attention: q {b}×{tq}×{h}, k {bk}×{tk}×{hk}, v {vd:?}, {} heads", self.heads);
        }
        let (q, k, v) = (data(s1, l1, "attention q")?, data(s2, l2, "attention k")?, data(s3, l3, "attention v")?);
        let (heads, hd) = (self.heads, h / self.heads);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut probs = vec![0f32; b * heads * tq * tk];
        let mut ctx = vec![0f32; b * tq * h];
        let (p_out, c_out) = (Out::new(&mut probs), Out::new(&mut ctx));
        par::for_each(b * heads, |task| {
            let (bi, col) = (task / heads, (task % heads) * hd);
            let mut qh = gather(q, bi, tq, h, col, hd, false);
            qh.iter_mut().for_each(|x| *x *= scale);
            let (kt, vh) = (gather(k, bi, tk, h, col, hd, true), gather(v, bi, tk, h, col, hd, false));
            // SAFETY: this task's block of `probs` belongs to it alone.
            let p = unsafe { p_out.slice(task * tq * tk, tq * tk) };
            gemm::matmul_nn(&qh, &kt, tq, hd, tk, p);
            for row in p.chunks_exact_mut(tk) {
                let inv = 1.0 / simd::exp_shifted_row(row);
                row.iter_mut().for_each(|x| *x *= inv);
            }
            let mut c = vec![0f32; tq * hd];
            gemm::matmul_nn(p, &vh, tq, tk, hd, &mut c);
            for (i, row) in c.chunks_exact(hd).enumerate() {
                c_out.write((bi * tq + i) * h + col, row);
            }
        });
        *self.probs.lock().expect("not poisoned") = Some(probs);
        Ok((CpuStorage::F32(ctx), Shape::from((b, tq, h))))
    }

    #[allow(clippy::type_complexity)]
    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, _c: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ((b, tq, h), tk) = (q.dims3()?, k.dim(1)?);
        let (heads, hd) = (self.heads, h / self.heads);
        let scale = 1.0 / (hd as f32).sqrt();
        let Some(probs) = self.probs.lock().expect("not poisoned").take() else {
            bail!("attention: a second backward through the same forward")
        };
        let (mut dq, mut dk, mut dv) = (vec![0f32; b * tq * h], vec![0f32; b * tk * h], vec![0f32; b * tk * h]);
        let (dq_out, dk_out, dv_out) = (Out::new(&mut dq), Out::new(&mut dk), Out::new(&mut dv));
        with_data(&g.contiguous()?, |gs| {
            with_data(q, |qs| {
                with_data(k, |ks| {
                    with_data(v, |vs| {
                        par::for_each(b * heads, |task| {
                            let (bi, col) = (task / heads, (task % heads) * hd);
                            let p = &probs[task * tq * tk..(task + 1) * tq * tk];
                            let gh = gather(gs, bi, tq, h, col, hd, false);
                            let mut dvh = vec![0f32; tk * hd];
                            gemm::matmul_nn(&transposed(p, tq, tk), &gh, tk, tq, hd, &mut dvh);
                            let mut ds = vec![0f32; tq * tk];
                            gemm::matmul_nn(&gh, &gather(vs, bi, tk, h, col, hd, true), tq, hd, tk, &mut ds);
                            for (dr, pr) in ds.chunks_exact_mut(tk).zip(p.chunks_exact(tk)) {
                                let dot: f32 = dr.iter().zip(pr).map(|(d, p)| d * p).sum();
                                dr.iter_mut().zip(pr).for_each(|(d, p)| *d = scale * p * (*d - dot));
                            }
                            let (mut dqh, mut dkh) = (vec![0f32; tq * hd], vec![0f32; tk * hd]);
                            gemm::matmul_nn(&ds, &gather(ks, bi, tk, h, col, hd, false), tq, tk, hd, &mut dqh);
                            gemm::matmul_nn(&transposed(&ds, tq, tk), &gather(qs, bi, tq, h, col, hd, false), tk, tq, hd, &mut dkh);
                            for (out, block, t) in [(&dq_out, &dqh, tq), (&dk_out, &dkh, tk), (&dv_out, &dvh, tk)] {
                                for (i, row) in block.chunks_exact(hd).enumerate() {
                                    out.write((bi * t + i) * h + col, row);
                                }
                            }
                        });
                    })
                })
            })
        })????;
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, (b, tq, h), dev)?),
            Some(Tensor::from_vec(dk, (b, tk, h), dev)?),
            Some(Tensor::from_vec(dv, (b, tk, h), dev)?),
        ))
    }
}

/// Multi-head attention of `q [b, tq, h]` over `k`, `v` `[b, tk, h]` (no mask: Unmask's
/// batches have no padding), `[b, tq, h]`, with gradients for all three.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, Attention { heads, probs: Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward and the three gradients equal candle's basic ops' (split heads, matmul,
    /// softmax, matmul, merge), under a loss that weights every output differently.
    #[test]
    fn matches_candles_basic_ops() {
        let dev = Device::Cpu;
        let (b, tq, tk, h, heads) = (3, 5, 7, 12, 3);
        let hd = h / heads;
        let var = |t: usize| Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, h), &dev).unwrap()).unwrap();
        let (q, k, v) = (var(tq), var(tk), var(tk));
        let weights = Tensor::randn(0f32, 1.0, (b, tq, h), &dev).unwrap();
        let split = |y: &Tensor, t: usize| y.reshape((b, t, heads, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let scores = (split(q.as_tensor(), tq).matmul(&split(k.as_tensor(), tk).t().unwrap()).unwrap() * (1.0 / (hd as f64).sqrt())).unwrap();
        let probs = super::super::train_rows::softmax(&scores).unwrap();
        let basic = probs.matmul(&split(v.as_tensor(), tk)).unwrap().transpose(1, 2).unwrap().reshape((b, tq, h)).unwrap();
        let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), heads).unwrap();
        let close = |a: &Tensor, e: &Tensor, what: &str| {
            let d = (a - e).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 2e-5, "{what}: max difference {d}");
        };
        close(&ours, &basic, "output");
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let (go, gb) = (loss(&ours).backward().unwrap(), loss(&basic).backward().unwrap());
        for (x, what) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
            close(go.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap(), what);
        }
    }
}
