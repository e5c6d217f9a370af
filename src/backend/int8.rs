//! Integer matrix multiply for quantized models in wasm: `y = x · Wᵀ + b` with `x` quantized
//! to 8 bits on the fly and `W` held as integers, both in groups of 128 along `k` with an f32
//! scale per (row, group). Two instruction choices behind one kernel (the `lanes` modules):
//! the relaxed-SIMD build's 8-bit dot (described below), and for engines without relaxed SIMD
//! (Safari, Node 20) SIMD128's `i32x4.dot_i16x8_s` on values widened to 16 bits (signed 8-bit
//! weights, no shift; Node 20's default-model generation 2.38 → 1.59 s against f32).
//!
//! Why: the f32 kernel ([`super::gemm`]) does 4 multiply-adds per instruction;
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` does 16. Its result is defined the same on every CPU
//! only while its second operand is in [0, 127] (V8 lowers it to unsigned × signed byte
//! products), so weights are quantized to [-63, 63] and stored shifted by +64; the shift comes
//! back out as 64 · Σx per group, which is summed once per activation row. Activations keep
//! 8 bits (7-bit activations cost the shipped model 3.4e-2 relative logit error instead of
//! 2.4e-2). Nothing can overflow (128 · 127 · 127 < 2^31). Scales per group were the measured
//! compromise: per row, 4e-2 relative logit error and a changed top-1 prediction; per 32, a
//! conversion every two dots that ate the gain.
//!
//! Layout (the one oneDNN and llama.cpp use for dot-product instructions): `W` is packed so
//! that 16 bytes hold 4 consecutive `k` of 4 neighbouring rows, and 4 bytes of a row of `x`
//! are broadcast to all lanes. One dot then adds to 4 *different outputs*, one per lane:
//! no lane sums at all, and per group only a convert and two multiply-adds per 4 outputs.
//! (The first kernel took dot products along `k` and summed lanes per group; it ran at half
//! the speed.)
//!
//! Used only for files stored quantized (the "q8" configuration of the benchmarks); f32 and
//! f16 files stay on the f32 kernel. Natively the relaxed build's arithmetic runs in portable
//! code so the tests can check it (and that the second operand stays unsigned); there it is
//! slower than candle's f32 GEMM and is off by default. The 16-bit variant is checked in Node
//! (`tests/node/package.test.mjs`).

use super::gemm::{for_each_tile, Tiles};
use super::par::{self, Out};
use super::simd;

/// Elements along `k` sharing one scale: integer sums run over a group, then turn into f32
/// once (per-row scales cost the shipped model 4e-2 relative logit error and a top-1 change;
/// per-32 scales cost a conversion per two dots and ate the gain).
pub const GROUP: usize = 128;

/// `W` (`[n, k]`) as integers (relaxed build: 7-bit shifted by +64; otherwise 8-bit in i16),
/// in groups of [`GROUP`] along `k` (the last one zero-padded), packed for the kernel: per
/// block of 4 rows (`n` padded with zero rows to a multiple of [`TC`]), per `KSTEP` (4 or 2)
/// along `k`, 16 bytes `[row 0: k..k+KSTEP, row 1: …, row 3]`.
pub struct QWeights {
    pub n: usize,
    pub k: usize,
    groups: usize,
    q: Vec<lanes::Elem>,
    /// Per block of 4 rows, per group: the 4 rows' scales.
    scales: Vec<f32>,
}

/// Rows of `src` (`rows × k`) quantized symmetrically per group of [`GROUP`] to
/// `[-limit, limit]` (round half to even), each row zero-padded to `groups · GROUP`. Returns
/// the integers, one scale per (row, group), the sum of the integers per (row, group), and
/// `groups`. Vectorised: activations are quantized on every call, and the scalar version
/// (a libm `roundf` per element) took 13 % of a generation in Chromium.
fn quantize_rows(src: &[f32], rows: usize, k: usize, limit: f32) -> (Vec<lanes::Elem>, Vec<f32>, Vec<f32>, usize) {
    let groups = k.div_ceil(GROUP);
    let mut q = vec![0 as lanes::Elem; rows * groups * GROUP];
    let mut scales = vec![0f32; rows * groups];
    let mut sums = vec![0f32; rows * groups];
    let (q_out, scales_out, sums_out) = (Out::new(&mut q), Out::new(&mut scales), Out::new(&mut sums));
    // Rows in tasks across the pool: on the engine's thread alone this took ~6 % of a
    // threaded forward.
    par::for_each(rows.div_ceil(QUANTIZE_ROWS), |task| {
        let (r0, r1) = (task * QUANTIZE_ROWS, ((task + 1) * QUANTIZE_ROWS).min(rows));
        // SAFETY: each task owns rows r0..r1 of the three outputs.
        let (q, scales, sums) = unsafe {
            (
                q_out.slice(r0 * groups * GROUP, (r1 - r0) * groups * GROUP),
                scales_out.slice(r0 * groups, (r1 - r0) * groups),
                sums_out.slice(r0 * groups, (r1 - r0) * groups),
            )
        };
        quantize_some(&src[r0 * k..r1 * k], r1 - r0, k, groups, limit, q, scales, sums);
    });
    (q, scales, sums, groups)
}

/// Rows quantized per task of [`quantize_rows`].
const QUANTIZE_ROWS: usize = 16;

/// [`quantize_rows`]' work on `rows` rows of `src`, into their parts of its outputs.
#[allow(clippy::too_many_arguments)]
fn quantize_some(src: &[f32], rows: usize, k: usize, groups: usize, limit: f32, q: &mut [lanes::Elem], scales: &mut [f32], sums: &mut [f32]) {
    let mut pad = [0f32; GROUP];
    for r in 0..rows {
        for g in 0..groups {
            let part = &src[r * k + g * GROUP..r * k + ((g + 1) * GROUP).min(k)];
            let block: &[f32; GROUP] = match part.try_into() {
                Ok(full) => full,
                Err(_) => {
                    pad.fill(0.0);
                    pad[..part.len()].copy_from_slice(part);
                    &pad
                }
            };
            let amax = abs_max(block);
            if amax == 0.0 || !amax.is_finite() {
                continue; // zeros, scale 0: a non-finite block must not poison the others
            }
            let at = (r * groups + g) * GROUP;
            let dst: &mut [lanes::Elem; GROUP] = (&mut q[at..at + GROUP]).try_into().expect("GROUP elements");
            sums[r * groups + g] = lanes::quantize_group(block, limit / amax, dst) as f32;
            scales[r * groups + g] = amax / limit;
        }
    }
}

/// The largest |value| (NaNs are skipped, as `f32::max` does, and quantize to 0).
fn abs_max(block: &[f32; GROUP]) -> f32 {
    let mut m = simd::splat(0.0);
    for c in block.chunks_exact(4) {
        // SAFETY: four floats.
        m = simd::max(m, simd::abs(unsafe { simd::load(c.as_ptr()) }));
    }
    simd::hmax(m)
}

impl QWeights {
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        let (rows, row_scales, _, groups) = quantize_rows(w, n, k, lanes::W_LIMIT);
        let kp = groups * GROUP;
        let ks = lanes::KSTEP;
        let blocks = n.next_multiple_of(TC) / 4;
        let mut q = vec![0 as lanes::Elem; blocks * kp * 4];
        let mut scales = vec![0f32; blocks * groups * 4];
        for row in 0..n {
            let (blk, c) = (row / 4, row % 4);
            for t in 0..k {
                // Shifted into the instruction's unsigned range where it has one (padding
                // stays 0).
                q[((blk * kp + t) / ks * 4 + c) * ks + t % ks] = rows[row * kp + t] + lanes::W_SHIFT;
            }
            for g in 0..groups {
                scales[(blk * groups + g) * 4 + c] = row_scales[row * groups + g];
            }
        }
        Self { n, k, groups, q, scales }
    }
}

/// wasm32: the relaxed build's 8-bit dot, or SIMD128's 16-bit one where the engine lacks
/// relaxed SIMD; the loads, stores and float steps are the same.
#[cfg(target_arch = "wasm32")]
mod lanes {
    use core::arch::wasm32::*;

    /// Relaxed SIMD: weights and activations as 8-bit integers, 4 of each per lane of a dot;
    /// weights in [-63, 63] shifted by +64 (the instruction's second operand must stay in
    /// [0, 127]).
    #[cfg(target_feature = "relaxed-simd")]
    mod dot {
        use core::arch::wasm32::*;
        pub type Elem = i8;
        pub const KSTEP: usize = 4;
        pub const W_LIMIT: f32 = 63.0;
        pub const W_SHIFT: Elem = 64;
        /// `acc + ` the 16 products `x · w` summed in groups of four (`w` in [0, 127]).
        #[inline(always)]
        pub fn dot(acc: v128, x: v128, w: v128) -> v128 {
            i32x4_relaxed_dot_i8x16_i7x16_add(x, w, acc)
        }
        /// `a · b + c`, fused where the CPU can.
        #[inline(always)]
        pub fn madd(a: v128, b: v128, c: v128) -> v128 {
            f32x4_relaxed_madd(a, b, c)
        }
        /// Narrows four vectors of i32 (each |v| ≤ 127) to 16 bytes.
        #[inline(always)]
        pub fn narrow(i: [v128; 4]) -> v128 {
            i8x16_narrow_i16x8(i16x8_narrow_i32x4(i[0], i[1]), i16x8_narrow_i32x4(i[2], i[3]))
        }
    }

    /// Engines without relaxed SIMD (Safari, Node 20): `i32x4.dot_i16x8_s`, a standard SIMD128
    /// instruction (one `pmaddwd` on x86), on 16-bit integers: 2 values of `k` per lane, 8
    /// multiply-adds per dot, signed weights in [-127, 127] (no shift). Twice the bytes of the
    /// 8-bit layout, half the work of f32.
    #[cfg(not(target_feature = "relaxed-simd"))]
    mod dot {
        use core::arch::wasm32::*;
        pub type Elem = i16;
        pub const KSTEP: usize = 2;
        pub const W_LIMIT: f32 = 127.0;
        pub const W_SHIFT: Elem = 0;
        #[inline(always)]
        pub fn dot(acc: v128, x: v128, w: v128) -> v128 {
            i32x4_add(acc, i32x4_dot_i16x8(x, w))
        }
        #[inline(always)]
        pub fn madd(a: v128, b: v128, c: v128) -> v128 {
            f32x4_add(f32x4_mul(a, b), c)
        }
        /// Narrows four vectors of i32 (each |v| ≤ 127) to 16 halfwords.
        #[inline(always)]
        pub fn narrow(i: [v128; 4]) -> [v128; 2] {
            [i16x8_narrow_i32x4(i[0], i[1]), i16x8_narrow_i32x4(i[2], i[3])]
        }
    }

    pub use dot::{dot, Elem, KSTEP, W_LIMIT, W_SHIFT};
    /// 16 bytes.
    pub type B16 = v128;
    /// Four i32 lanes.
    pub type Acc = v128;
    /// Four f32 lanes.
    pub type FAcc = v128;

    /// # Safety
    /// `p..p + 16` bytes must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const u8) -> B16 {
        v128_load(p as *const v128)
    }
    /// The 4 bytes at `p` in every lane.
    /// # Safety
    /// `p..p + 4` must be readable.
    #[inline(always)]
    pub unsafe fn load4_splat(p: *const u8) -> B16 {
        v128_load32_splat(p as *const u32)
    }
    /// # Safety
    /// `p..p + 4` must be readable.
    #[inline(always)]
    pub unsafe fn fload(p: *const f32) -> FAcc {
        v128_load(p as *const v128)
    }
    /// # Safety
    /// `p..p + 4` must be writable.
    #[inline(always)]
    pub unsafe fn fstore(p: *mut f32, v: FAcc) {
        v128_store(p as *mut v128, v)
    }
    #[inline(always)]
    pub fn zero() -> Acc {
        i32x4_splat(0)
    }
    #[inline(always)]
    pub fn fzero() -> FAcc {
        f32x4_splat(0.0)
    }
    /// `acc + (f32(ints) + shift) · (sx · sw)`, lane by lane.
    #[inline(always)]
    pub fn group_add(acc: FAcc, ints: Acc, shift: f32, sx: f32, sw: FAcc) -> FAcc {
        let v = f32x4_add(f32x4_convert_i32x4(ints), f32x4_splat(shift));
        dot::madd(v, f32x4_mul(f32x4_splat(sx), sw), acc)
    }
    #[inline(always)]
    pub fn fadd(a: FAcc, b: FAcc) -> FAcc {
        f32x4_add(a, b)
    }
    #[inline(always)]
    pub fn to_array(a: FAcc) -> [f32; 4] {
        [f32x4_extract_lane::<0>(a), f32x4_extract_lane::<1>(a), f32x4_extract_lane::<2>(a), f32x4_extract_lane::<3>(a)]
    }
    /// `dst = nearest(src · inv)` (|src · inv| ≤ 127: the narrowing never saturates), and
    /// the sum of `dst`.
    #[inline(always)]
    pub fn quantize_group(src: &[f32; super::GROUP], inv: f32, dst: &mut [Elem; super::GROUP]) -> i32 {
        let inv = f32x4_splat(inv);
        let mut sum = i32x4_splat(0);
        for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
            // SAFETY: 16 floats in, 16 elements (one or two vectors) out.
            unsafe {
                let i: [v128; 4] = std::array::from_fn(|q| {
                    i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v128_load(s.as_ptr().add(4 * q) as *const v128), inv)))
                });
                sum = i32x4_add(sum, i32x4_add(i32x4_add(i[0], i[1]), i32x4_add(i[2], i[3])));
                let packed = dot::narrow(i);
                std::ptr::write_unaligned(d.as_mut_ptr() as *mut _, packed);
            }
        }
        i32x4_extract_lane::<0>(sum) + i32x4_extract_lane::<1>(sum) + i32x4_extract_lane::<2>(sum) + i32x4_extract_lane::<3>(sum)
    }
}

/// The relaxed build's arithmetic in portable code (the tests' path natively).
#[cfg(not(target_arch = "wasm32"))]
mod lanes {
    pub type Elem = i8;
    pub const KSTEP: usize = 4;
    pub const W_LIMIT: f32 = 63.0;
    pub const W_SHIFT: Elem = 64;
    pub type B16 = [i8; 16];
    pub type Acc = [i32; 4];
    pub type FAcc = [f32; 4];

    /// # Safety
    /// `p..p + 16` must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const u8) -> B16 {
        std::ptr::read_unaligned(p as *const B16)
    }
    /// # Safety
    /// `p..p + 4` must be readable.
    #[inline(always)]
    pub unsafe fn load4_splat(p: *const u8) -> B16 {
        let four = std::ptr::read_unaligned(p as *const [i8; 4]);
        std::array::from_fn(|i| four[i % 4])
    }
    /// # Safety
    /// `p..p + 4` must be readable.
    #[inline(always)]
    pub unsafe fn fload(p: *const f32) -> FAcc {
        std::ptr::read_unaligned(p as *const FAcc)
    }
    /// # Safety
    /// `p..p + 4` must be writable.
    #[inline(always)]
    pub unsafe fn fstore(p: *mut f32, v: FAcc) {
        std::ptr::write_unaligned(p as *mut FAcc, v)
    }
    /// The wasm instruction's result is defined only while `w` is in [0, 127] (checked here,
    /// where the tests run).
    #[inline(always)]
    pub fn dot(acc: Acc, x: B16, w: B16) -> Acc {
        debug_assert!(w.iter().all(|&v| v >= 0), "the second operand must be 7-bit unsigned");
        std::array::from_fn(|lane| acc[lane] + (0..4).map(|t| x[lane * 4 + t] as i32 * w[lane * 4 + t] as i32).sum::<i32>())
    }
    #[inline(always)]
    pub fn zero() -> Acc {
        [0; 4]
    }
    #[inline(always)]
    pub fn fzero() -> FAcc {
        [0.0; 4]
    }
    #[inline(always)]
    pub fn group_add(acc: FAcc, ints: Acc, shift: f32, sx: f32, sw: FAcc) -> FAcc {
        std::array::from_fn(|i| acc[i] + (ints[i] as f32 + shift) * (sx * sw[i]))
    }
    #[inline(always)]
    pub fn fadd(a: FAcc, b: FAcc) -> FAcc {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    pub fn to_array(a: FAcc) -> [f32; 4] {
        a
    }
    #[inline(always)]
    pub fn quantize_group(src: &[f32; super::GROUP], inv: f32, dst: &mut [i8; super::GROUP]) -> i32 {
        let mut sum = 0;
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
            sum += *d as i32;
        }
        sum
    }
}

/// Tile: 4 rows of `x` × 8 outputs (two packed blocks of 4 rows of `W`): 8 integer
/// accumulators, 2 loads of `W` and 4 broadcasts of `x` per 8 dots. Measured in Chromium:
/// 3 × 12 the same, 6 × 8 25 % slower (spills).
const TR: usize = 4;
const TC: usize = 8;

/// `out[m × n] = x[m × k] · Wᵀ (+ bias[n])` with `x` quantized here, per row and group;
/// writes every element of `out`'s first `m × n` (so its buffer may come from
/// [`super::par::written`]).
pub fn matmul_q(x: &[f32], w: &QWeights, bias: Option<&[f32]>, m: usize, out: &Out) {
    let (k, n) = (w.k, w.n);
    assert!(x.len() >= m * k && out.len() >= m * n, "matmul_q: slices too short");
    assert!(bias.is_none_or(|b| b.len() >= n), "matmul_q: bias too short");
    // Σ x per (row, group), for taking the weights' +64 shift back out.
    let (xq, xs, xsum, groups) = quantize_rows(x, m, k, 127.0);
    debug_assert_eq!(groups, w.groups);
    let p = Operands { xq: &xq, xs: &xs, xsum: &xsum, w, bias, n, groups };
    // Whole tiles across the padded width (a multiple of TC, as is the walker's block of W
    // rows); the tile writes only the outputs below n.
    for_each_tile::<_, TR, TC>(&p, m, n.next_multiple_of(TC), out);
}

struct Operands<'a> {
    xq: &'a [lanes::Elem],
    xs: &'a [f32],
    xsum: &'a [f32],
    w: &'a QWeights,
    bias: Option<&'a [f32]>,
    n: usize,
    groups: usize,
}

impl Tiles for Operands<'_> {
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(&self, i: usize, j: usize, out: &Out) {
        assert!(C == TC && j % TC == 0, "the packed kernel covers whole blocks of {TC} outputs");
        const V: usize = TC / 4;
        let p = self;
        let ng = p.groups;
        let kp = ng * GROUP;
        let blk = j / 4;
        let mut acc = [[lanes::fzero(); V]; R];
        for g in 0..ng {
            let mut ints = [[lanes::zero(); V]; R];
            let ks = lanes::KSTEP;
            let (wq, xq) = (p.w.q.as_ptr() as *const u8, p.xq.as_ptr() as *const u8);
            for s in g * GROUP / ks..(g + 1) * GROUP / ks {
                // SAFETY: blocks blk..blk+V of the packed W hold kp / KSTEP units of 16 bytes
                // (from_f32 pads n to a multiple of TC), rows i..i+R of xq hold kp elements
                // (quantize_rows), and s < kp / KSTEP.
                unsafe {
                    let ws: [lanes::B16; V] = std::array::from_fn(|v| lanes::load(wq.add(((blk + v) * kp / ks + s) * 16)));
                    for (r, row) in ints.iter_mut().enumerate() {
                        let xv = lanes::load4_splat(xq.add(((i + r) * kp + s * ks) * std::mem::size_of::<lanes::Elem>()));
                        for v in 0..V {
                            row[v] = lanes::dot(row[v], xv, ws[v]);
                        }
                    }
                }
            }
            // SAFETY: (blk + v) · ng + g < blocks · ng, 4 scales each.
            let sw: [lanes::FAcc; V] = std::array::from_fn(|v| unsafe { lanes::fload(p.w.scales.as_ptr().add(((blk + v) * ng + g) * 4)) });
            for r in 0..R {
                let (sx, shift) = (p.xs[(i + r) * ng + g], -(lanes::W_SHIFT as f32) * p.xsum[(i + r) * ng + g]);
                for v in 0..V {
                    acc[r][v] = lanes::group_add(acc[r][v], ints[r][v], shift, sx, sw[v]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &a) in row.iter().enumerate() {
                let (c0, at) = (j + 4 * v, (i + r) * p.n + j + 4 * v);
                if c0 + 4 <= p.n {
                    // SAFETY: columns c0..c0+4 exist in out's row and in bias, and belong to
                    // this tile.
                    unsafe {
                        let a = match p.bias {
                            Some(b) => lanes::fadd(a, lanes::fload(b.as_ptr().add(c0))),
                            None => a,
                        };
                        lanes::fstore(out.at(at), a);
                    }
                } else {
                    for (e, val) in lanes::to_array(a).into_iter().enumerate().take(p.n.saturating_sub(c0)) {
                        out.set(at + e, val + p.bias.map_or(0.0, |b| b[c0 + e]));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_f32_on_awkward_shapes() {
        let mut rng = crate::rng::Rng::new(11);
        for &(m, k, n) in &[(1, 1, 1), (2, 3, 5), (7, 33, 50), (3, 64, 3), (10, 97, 97), (5, 384, 101), (40, 256, 40)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
            let q = QWeights::from_f32(&w, n, k);
            // NaN first: every output must be written.
            let mut got = vec![f32::NAN; m * n];
            matmul_q(&x, &q, Some(&b), m, &Out::new(&mut got));
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
        matmul_q(&[1.0; 40], &q, None, 1, &Out::new(&mut out));
        assert_eq!(out, vec![0.0, 0.0]);
    }
}
