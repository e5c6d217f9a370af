//! Training's attention as one differentiable op: one task per (sequence, head) across the
//! pool, forward and backward, on our untransposed GEMM ([`gemm::matmul_nn`]). Through
//! candle's batched matmul it ran on one thread in wasm (its own pool has one there), with the
//! head split and merge as strided copies around it: serial work that kept a fine-tuning step's
//! second thread waiting.
//!
//! Forward, per head: `P = softmax(s · Q Kᵀ)`, `C = P V` with `s = 1/√hd`. Backward from `G`:
//! `dV = Pᵀ G`, `dP = G Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = s · dS K`,
//! `dK = s · dSᵀ Q`. The forward keeps `P` for the backward.

use std::ops::Range;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::par::{self, Out};
use super::train_rows::{data, with_data};
use super::{gemm, simd};

struct Attention {
    heads: usize,
    /// Per sequence, the rows of `q` that attend over its keys ([`super::query_spans`]).
    spans: Vec<Range<usize>>,
    /// Per (sequence, head), the forward's `P [tq × tk]` (taken by the backward).
    probs: std::sync::Mutex<Option<Vec<f32>>>,
}

impl Attention {
    /// Task `task`'s sequence, its first row of `q`, its query count, its head's first column
    /// and where its `P` starts.
    fn task(&self, task: usize, tk: usize, hd: usize) -> (usize, usize, usize, usize, usize) {
        let (bi, head) = (task / self.heads, task % self.heads);
        let (q0, tq) = (self.spans[bi].start, self.spans[bi].len());
        (bi, q0, tq, head * hd, (q0 * self.heads + head * tq) * tk)
    }
}

/// Rows `row0..row0 + t` of one head (`hd` columns from `col`) of `x [rows × h]`, as a
/// `[t × hd]` block, or transposed (`[hd × t]`).
fn gather(x: &[f32], row0: usize, t: usize, h: usize, col: usize, hd: usize, transpose: bool) -> Vec<f32> {
    let mut out = vec![0f32; t * hd];
    for i in 0..t {
        let src = &x[(row0 + i) * h + col..(row0 + i) * h + col + hd];
        if transpose {
            src.iter().enumerate().for_each(|(d, &v)| out[d * t + i] = v);
        } else {
            out[i * hd..(i + 1) * hd].copy_from_slice(src);
        }
    }
    out
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "unmask-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((b, tk, h), vd) = (l2.shape().dims3()?, l3.shape().dims3()?);
        let rows = l1.shape().elem_count() / h.max(1);
        let covered = self.spans.len() == b && self.spans.last().is_none_or(|s| s.end == rows);
        if vd != (b, tk, h) || l1.shape().dims().last() != Some(&h) || h % self.heads != 0 || !covered {
            bail!("attention: q {:?}, k {b}×{tk}×{h}, v {vd:?}, {} heads, {} sequences of queries", l1.shape(), self.heads, self.spans.len());
        }
        let (q, k, v) = (data(s1, l1, "attention q")?, data(s2, l2, "attention k")?, data(s3, l3, "attention v")?);
        let (heads, hd) = (self.heads, h / self.heads);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut probs = vec![0f32; rows * heads * tk];
        let mut ctx = vec![0f32; rows * h];
        let (p_out, c_out) = (Out::new(&mut probs), Out::new(&mut ctx));
        par::for_each(b * heads, |task| {
            let (bi, q0, tq, col, p0) = self.task(task, tk, hd);
            let mut qh = gather(q, q0, tq, h, col, hd, false);
            qh.iter_mut().for_each(|x| *x *= scale);
            let (kt, vh) = (gather(k, bi * tk, tk, h, col, hd, true), gather(v, bi * tk, tk, h, col, hd, false));
            // SAFETY: this task's block of `probs` belongs to it alone.
            let p = unsafe { p_out.slice(p0, tq * tk) };
            gemm::matmul_nn(&qh, &kt, tq, hd, tk, p);
            for row in p.chunks_exact_mut(tk) {
                let inv = 1.0 / simd::exp_shifted_row(row);
                row.iter_mut().for_each(|x| *x *= inv);
            }
            let mut c = vec![0f32; tq * hd];
            gemm::matmul_nn(p, &vh, tq, tk, hd, &mut c);
            for (i, row) in c.chunks_exact(hd).enumerate() {
                c_out.write((q0 + i) * h + col, row);
            }
        });
        *self.probs.lock().expect("not poisoned") = Some(probs);
        Ok((CpuStorage::F32(ctx), l1.shape().clone()))
    }

    #[allow(clippy::type_complexity)]
    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, _c: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, tk, h) = k.dims3()?;
        let rows = q.elem_count() / h;
        let (heads, hd) = (self.heads, h / self.heads);
        let scale = 1.0 / (hd as f32).sqrt();
        let Some(probs) = self.probs.lock().expect("not poisoned").take() else {
            bail!("attention: a second backward through the same forward")
        };
        let (mut dq, mut dk, mut dv) = (vec![0f32; rows * h], vec![0f32; b * tk * h], vec![0f32; b * tk * h]);
        let (dq_out, dk_out, dv_out) = (Out::new(&mut dq), Out::new(&mut dk), Out::new(&mut dv));
        with_data(&g.contiguous()?, |gs| {
            with_data(q, |qs| {
                with_data(k, |ks| {
                    with_data(v, |vs| {
                        par::for_each(b * heads, |task| {
                            let (bi, q0, tq, col, p0) = self.task(task, tk, hd);
                            let p = &probs[p0..p0 + tq * tk];
                            let gh = gather(gs, q0, tq, h, col, hd, false);
                            let mut dvh = vec![0f32; tk * hd];
                            gemm::matmul_nn(&gemm::transposed(p, tq, tk), &gh, tk, tq, hd, &mut dvh);
                            let mut ds = vec![0f32; tq * tk];
                            gemm::matmul_nn(&gh, &gather(vs, bi * tk, tk, h, col, hd, true), tq, hd, tk, &mut ds);
                            for (dr, pr) in ds.chunks_exact_mut(tk).zip(p.chunks_exact(tk)) {
                                let dot: f32 = dr.iter().zip(pr).map(|(d, p)| d * p).sum();
                                dr.iter_mut().zip(pr).for_each(|(d, p)| *d = scale * p * (*d - dot));
                            }
                            let (mut dqh, mut dkh) = (vec![0f32; tq * hd], vec![0f32; tk * hd]);
                            gemm::matmul_nn(&ds, &gather(ks, bi * tk, tk, h, col, hd, false), tq, tk, hd, &mut dqh);
                            gemm::matmul_nn(&gemm::transposed(&ds, tq, tk), &gather(qs, q0, tq, h, col, hd, false), tk, tq, hd, &mut dkh);
                            for (out, block, row0) in [(&dq_out, &dqh, q0), (&dk_out, &dkh, bi * tk), (&dv_out, &dvh, bi * tk)] {
                                for (i, row) in block.chunks_exact(hd).enumerate() {
                                    out.write((row0 + i) * h + col, row);
                                }
                            }
                        });
                    })
                })
            })
        })????;
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, (b, tk, h), dev)?),
            Some(Tensor::from_vec(dv, (b, tk, h), dev)?),
        ))
    }
}

/// Multi-head attention of the rows of `q` over `k`, `v` `[b, tk, h]` (no mask: Unmask's
/// batches have no padding), the rows `spans[i]` of `q` over sequence `i`'s keys; the result
/// has `q`'s shape, with gradients for all three.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, spans: Vec<Range<usize>>) -> candle_core::Result<Tensor> {
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, Attention { heads, spans, probs: Default::default() })
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
        let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), heads, (0..b).map(|i| i * tq..(i + 1) * tq).collect()).unwrap();
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

    /// Queries for some rows only, a different number per sequence (none in one): the output
    /// and the three gradients equal those of attention over every row, then the rows picked.
    #[test]
    fn some_rows_of_each_sequence_match_every_row_then_picked() {
        let dev = Device::Cpu;
        let (b, t, h, heads) = (3, 6, 8, 2);
        let var = || Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, h), &dev).unwrap()).unwrap();
        let (q, k, v) = (var(), var(), var());
        let rows: Vec<u32> = vec![1, 2, 5, 12, 13, 14, 15, 17];
        let spans = crate::backend::query_spans(Some(&rows), rows.len(), b, t).unwrap();
        assert_eq!(spans, vec![0..3, 3..3, 3..8]);
        let picked = |x: &Tensor| x.reshape((b * t, h)).unwrap().index_select(&Tensor::new(rows.as_slice(), &dev).unwrap(), 0).unwrap();
        let every = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), heads, (0..b).map(|i| i * t..(i + 1) * t).collect()).unwrap();
        let every = picked(&every);
        let some = attention(&picked(q.as_tensor()), k.as_tensor(), v.as_tensor(), heads, spans).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (rows.len(), h), &dev).unwrap();
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let (ge, gs) = (loss(&every).backward().unwrap(), loss(&some).backward().unwrap());
        let diff = |a: &Tensor, e: &Tensor| (a - e).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&some, &every) < 1e-6, "output");
        for (x, what) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
            assert!(diff(gs.get(x.as_tensor()).unwrap(), ge.get(x.as_tensor()).unwrap()) < 1e-5, "{what}");
        }
        assert_eq!(crate::backend::query_spans(Some(&[3, 2, 2, 7]), 4, b, t).unwrap(), vec![0..3, 3..4, 4..4], "any order within a sequence");
        assert!(crate::backend::query_spans(Some(&[7, 2]), 2, b, t).is_err(), "sequences out of order are refused");
        assert!(crate::backend::query_spans(Some(&[3, 18]), 2, b, t).is_err(), "rows beyond the batch are refused");
    }
}
