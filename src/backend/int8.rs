//! Integer matrix multiply for quantized models in the relaxed-SIMD wasm build:
//! `y = x · Wᵀ + b` with `x` quantized to 8 bits on the fly and `W` held as 7-bit integers,
//! both in groups of 128 along `k` with an f32 scale per (row, group).
//!
//! Why: the f32 kernel ([`super::gemm`]) does 4 multiply-adds per instruction;
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` does 16. Its result is defined the same on every CPU
//! only while its second operand is in [0, 127] (V8 lowers it to unsigned × signed byte
//! products), so weights are quantized to [-63, 63] and stored shifted by +64; the shift comes
//! back out as 64 · Σx per group, which is summed once per activation row. Activations keep
//! 8 bits (7-bit activations cost the shipped model 3.4e-2 relative logit error instead of
//! 2.4e-2). Integer sums run over a whole group and turn into f32 once, in vector lanes;
//! nothing can overflow (128 · 127 · 127 < 2^31). Scales per group were the measured
//! compromise: per row, 4e-2 relative logit error and a changed top-1 prediction; per 32, a
//! conversion every two dots that ate the gain.
//!
//! Used only for files stored quantized (the "q8" configuration of the benchmarks); f32 and
//! f16 files stay on the f32 kernel. Natively the same arithmetic runs in portable code so the
//! tests can check it (and that the second operand stays unsigned); there it is slower than
//! candle's f32 GEMM and is off by default.

use std::cell::Cell;

use super::gemm::{for_each_tile, Tiles};

/// Bytes per padded unit along `k` (two 16-lane dots).
pub const BLOCK: usize = 32;
/// Elements along `k` sharing one scale: integer sums run over a group, then turn into f32
/// once (per-row scales cost the shipped model 4e-2 relative logit error and a top-1 change;
/// per-32 scales cost a conversion per two dots and ate the gain).
pub const GROUP: usize = 128;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"))) };
}

/// Chooses this kernel for quantized linears on the calling thread (default: on in the
/// relaxed-SIMD wasm build only).
pub fn use_int8(on: bool) {
    ON.with(|o| o.set(on));
}

pub fn int8_enabled() -> bool {
    ON.with(|o| o.get())
}

/// `W` (`[n, k]`) as 7-bit integers in groups of [`GROUP`] along `k` (the last one
/// zero-padded), with one f32 scale per group.
pub struct QWeights {
    pub n: usize,
    pub k: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
}

/// Symmetric quantization of one block to `[-limit, limit]`; returns the scale.
fn quantize_block(src: &[f32], limit: f32, dst: &mut [i8]) -> f32 {
    let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        dst.iter_mut().for_each(|d| *d = 0);
        return 0.0;
    }
    let inv = limit / amax;
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = (v * inv).round().clamp(-limit, limit) as i8;
    }
    for d in dst.iter_mut().skip(src.len()) {
        *d = 0;
    }
    amax / limit
}

/// Rows of `src` (`rows × k`) quantized per group of [`GROUP`] to `[-limit, limit]`, each row
/// zero-padded to `groups · GROUP`; one scale per (row, group).
fn quantize_rows(src: &[f32], rows: usize, k: usize, limit: f32) -> (Vec<i8>, Vec<f32>, usize) {
    let groups = k.div_ceil(GROUP);
    let mut q = vec![0i8; rows * groups * GROUP];
    let mut scales = vec![0f32; rows * groups];
    for r in 0..rows {
        for g in 0..groups {
            let part = &src[r * k + g * GROUP..r * k + ((g + 1) * GROUP).min(k)];
            let at = (r * groups + g) * GROUP;
            scales[r * groups + g] = quantize_block(part, limit, &mut q[at..at + GROUP]);
        }
    }
    (q, scales, groups)
}

impl QWeights {
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        // 7 bits shifted to [1, 127] (padding stays 0): the instruction's second operand must
        // not use its top bit. The shift comes back out as 64 · Σ x per group (matmul_q).
        let (mut q, scales, groups) = quantize_rows(w, n, k, 63.0);
        let padded = groups * GROUP;
        for (i, v) in q.iter_mut().enumerate() {
            if i % padded < k {
                *v += 64;
            }
        }
        Self { n, k, q, scales }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod lanes {
    use core::arch::wasm32::*;

    /// Σ over one block of 32: two relaxed dots (16 products each, summed in 4 lanes).
    /// # Safety
    /// `a` and `b` point at 32 readable bytes.
    #[inline(always)]
    pub unsafe fn block_dot(acc: Acc, a: *const i8, b: *const i8) -> Acc {
        let acc = i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(a as *const v128), v128_load(b as *const v128), acc);
        i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(a.add(16) as *const v128), v128_load(b.add(16) as *const v128), acc)
    }
    pub type Acc = v128;
    #[inline(always)]
    pub fn zero() -> Acc {
        i32x4_splat(0)
    }
    pub type FAcc = v128;
    #[inline(always)]
    pub fn fzero() -> FAcc {
        f32x4_splat(0.0)
    }
    /// acc + f32(ints) · scale
    #[inline(always)]
    pub fn scaled_add(acc: FAcc, ints: Acc, scale: f32) -> FAcc {
        f32x4_relaxed_madd(f32x4_convert_i32x4(ints), f32x4_splat(scale), acc)
    }
    #[inline(always)]
    pub fn fsum(a: FAcc) -> f32 {
        (f32x4_extract_lane::<0>(a) + f32x4_extract_lane::<1>(a)) + (f32x4_extract_lane::<2>(a) + f32x4_extract_lane::<3>(a))
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
mod lanes {
    /// The same sums as the wasm instruction, whose result is defined only while `b` is in
    /// [0, 127] (checked here, where the tests run).
    /// # Safety
    /// `a` and `b` point at 32 readable bytes.
    #[inline(always)]
    pub unsafe fn block_dot(acc: Acc, a: *const i8, b: *const i8) -> Acc {
        let (a, b) = (std::slice::from_raw_parts(a, 32), std::slice::from_raw_parts(b, 32));
        debug_assert!(b.iter().all(|&v| v >= 0), "the second operand must be 7-bit unsigned");
        std::array::from_fn(|lane| {
            acc[lane] + (0..2).map(|half| (0..4).map(|t| a[half * 16 + lane * 4 + t] as i32 * b[half * 16 + lane * 4 + t] as i32).sum::<i32>()).sum::<i32>()
        })
    }
    pub type Acc = [i32; 4];
    #[inline(always)]
    pub fn zero() -> Acc {
        [0; 4]
    }
    pub type FAcc = [f32; 4];
    #[inline(always)]
    pub fn fzero() -> FAcc {
        [0.0; 4]
    }
    #[inline(always)]
    pub fn scaled_add(acc: FAcc, ints: Acc, scale: f32) -> FAcc {
        std::array::from_fn(|i| acc[i] + ints[i] as f32 * scale)
    }
    #[inline(always)]
    pub fn fsum(a: FAcc) -> f32 {
        (a[0] + a[1]) + (a[2] + a[3])
    }
}

/// Tile of 2 rows of `x` × 2 rows of `W`: 4 integer accumulators and 4 operands stay in
/// registers (the lane sums per group are scalar work).
const TR: usize = 2;
const TC: usize = 2;
/// `out[m × n] = x[m × k] · Wᵀ (+ bias[n])` with `x` quantized here, per row and block.
pub fn matmul_q(x: &[f32], w: &QWeights, bias: Option<&[f32]>, m: usize, out: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    assert!(x.len() >= m * k && out.len() >= m * n, "matmul_q: slices too short");
    assert!(bias.is_none_or(|b| b.len() >= n), "matmul_q: bias too short");
    let (xq, xs, groups) = quantize_rows(x, m, k, 127.0);
    // Σ x per (row, group), for taking the weights' +64 shift back out.
    let xsum: Vec<f32> = xq.chunks(GROUP).map(|g| g.iter().map(|&v| v as i32).sum::<i32>() as f32).collect();
    let p = Operands { xq: &xq, xs: &xs, xsum: &xsum, w, bias, n, groups };
    for_each_tile::<_, TR, TC>(&p, m, n, out);
}

struct Operands<'a> {
    xq: &'a [i8],
    xs: &'a [f32],
    xsum: &'a [f32],
    w: &'a QWeights,
    bias: Option<&'a [f32]>,
    n: usize,
    groups: usize,
}

impl Tiles for Operands<'_> {
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(&self, i: usize, j: usize, out: &mut [f32]) {
        let p = self;
        let ng = p.groups;
        let xr: [*const i8; R] = std::array::from_fn(|r| p.xq[(i + r) * ng * GROUP..].as_ptr());
        let wr: [*const i8; C] = std::array::from_fn(|c| p.w.q[(j + c) * ng * GROUP..].as_ptr());
        let mut acc = [[lanes::fzero(); C]; R];
        let mut shift = [[0f32; C]; R];
        for g in 0..ng {
            let mut ints = [[lanes::zero(); C]; R];
            for b in (g * GROUP..(g + 1) * GROUP).step_by(BLOCK) {
                for c in 0..C {
                    for r in 0..R {
                        // SAFETY: rows i..i+R of xq and j..j+C of q hold ng groups of GROUP bytes
                        // (quantize_rows), and b + BLOCK <= ng · GROUP.
                        ints[r][c] = unsafe { lanes::block_dot(ints[r][c], xr[r].add(b), wr[c].add(b)) };
                    }
                }
            }
            // Lanes stay apart until the end: per group only a convert and a multiply-add.
            for r in 0..R {
                let sx = p.xs[(i + r) * ng + g];
                for c in 0..C {
                    let s = sx * p.w.scales[(j + c) * ng + g];
                    acc[r][c] = lanes::scaled_add(acc[r][c], ints[r][c], s);
                    shift[r][c] += p.xsum[(i + r) * ng + g] * s;
                }
            }
        }
        for r in 0..R {
            for c in 0..C {
                out[(i + r) * p.n + j + c] = lanes::fsum(acc[r][c]) - 64.0 * shift[r][c] + p.bias.map_or(0.0, |b| b[j + c]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_f32_on_awkward_shapes() {
        let mut rng = crate::diffusion::rng::Rng::new(11);
        for &(m, k, n) in &[(1, 1, 1), (2, 3, 5), (7, 33, 50), (3, 64, 3), (10, 97, 97), (5, 384, 101), (40, 256, 40)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
            let q = QWeights::from_f32(&w, n, k);
            let mut got = vec![0f32; m * n];
            matmul_q(&x, &q, Some(&b), m, &mut got);
            let mut err = 0f64;
            let mut norm = 0f64;
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum::<f64>() + b[j] as f64;
                    err += (got[i * n + j] as f64 - want).powi(2);
                    norm += want.powi(2);
                }
            }
            // 7-bit weights and 8-bit activations on uniform data.
            let rel = (err / norm.max(1e-12)).sqrt();
            // Measured 0.83–0.88 % wherever there are 100 outputs or more; few outputs scatter more.
            let bound = if m * n >= 100 { 0.012 } else { 0.05 };
            assert!(rel < bound, "{m}×{k}×{n}: relative RMS {rel}");
        }
    }

    #[test]
    fn zero_and_non_finite_blocks_do_not_poison_the_result() {
        let w = vec![0f32; 2 * 40];
        let q = QWeights::from_f32(&w, 2, 40);
        let mut out = vec![1f32; 2];
        matmul_q(&[1.0; 40], &q, None, 1, &mut out);
        assert_eq!(out, vec![0.0, 0.0]);
    }
}
