//! Four f32 lanes and the vector math the inference kernels share: the GEMM's multiply-add,
//! and `exp` / `erf` / `tanh` for softmax and GELU.
//!
//! Why our own `exp` and `erf`: in wasm32 the standard library's `expf` and `erff` are scalar
//! libm calls, and a profile of a generation in Chromium put 18 % of its time in `expf`
//! (attention softmax) and 8 % in `erff` (GELU). Here they are polynomials over four lanes.
//! On wasm32 the lanes are SIMD128 `v128`; elsewhere `[f32; 4]`, which LLVM vectorises.

#[cfg(target_arch = "wasm32")]
mod lanes {
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub struct F4(pub v128);

    #[inline(always)]
    pub fn splat(v: f32) -> F4 {
        F4(f32x4_splat(v))
    }
    /// # Safety
    /// `p..p + 4` must be readable (wasm loads need no alignment).
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> F4 {
        F4(v128_load(p as *const v128))
    }
    /// # Safety
    /// `p..p + 4` must be writable.
    #[inline(always)]
    pub unsafe fn store(p: *mut f32, v: F4) {
        v128_store(p as *mut v128, v.0)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    #[inline(always)]
    pub fn mul_add(acc: F4, a: F4, b: F4) -> F4 {
        F4(f32x4_add(acc.0, f32x4_mul(a.0, b.0)))
    }
    /// Relaxed SIMD: one fused multiply-add where the CPU has one (halves the arithmetic of
    /// the GEMM's inner loop; results may differ from the unfused build in the last bit).
    #[cfg(target_feature = "relaxed-simd")]
    #[inline(always)]
    pub fn mul_add(acc: F4, a: F4, b: F4) -> F4 {
        F4(f32x4_relaxed_madd(a.0, b.0, acc.0))
    }
    #[inline(always)]
    pub fn add(a: F4, b: F4) -> F4 {
        F4(f32x4_add(a.0, b.0))
    }
    #[inline(always)]
    pub fn sub(a: F4, b: F4) -> F4 {
        F4(f32x4_sub(a.0, b.0))
    }
    #[inline(always)]
    pub fn mul(a: F4, b: F4) -> F4 {
        F4(f32x4_mul(a.0, b.0))
    }
    #[inline(always)]
    pub fn div(a: F4, b: F4) -> F4 {
        F4(f32x4_div(a.0, b.0))
    }
    #[inline(always)]
    pub fn max(a: F4, b: F4) -> F4 {
        F4(f32x4_pmax(a.0, b.0))
    }
    #[inline(always)]
    pub fn min(a: F4, b: F4) -> F4 {
        F4(f32x4_pmin(a.0, b.0))
    }
    #[inline(always)]
    pub fn abs(a: F4) -> F4 {
        F4(f32x4_abs(a.0))
    }
    /// Round half to even.
    #[inline(always)]
    pub fn nearest(a: F4) -> F4 {
        F4(f32x4_nearest(a.0))
    }
    /// `2^n` for whole-valued `n` in [-126, 127].
    #[inline(always)]
    pub fn pow2(n: F4) -> F4 {
        F4(i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n.0), i32x4_splat(127)), 23))
    }
    /// Lane-wise `if c >= 0 { a } else { b }`.
    #[inline(always)]
    pub fn select_nonneg(c: F4, a: F4, b: F4) -> F4 {
        F4(v128_bitselect(a.0, b.0, f32x4_ge(c.0, f32x4_splat(0.0))))
    }
    /// Lane-wise `if c >= t { a } else { 0 }` (also 0 where `c` is NaN).
    #[inline(always)]
    pub fn zero_below(c: F4, t: f32, a: F4) -> F4 {
        F4(v128_and(a.0, f32x4_ge(c.0, f32x4_splat(t))))
    }
    #[inline(always)]
    pub fn sum(a: F4) -> f32 {
        (f32x4_extract_lane::<0>(a.0) + f32x4_extract_lane::<1>(a.0)) + (f32x4_extract_lane::<2>(a.0) + f32x4_extract_lane::<3>(a.0))
    }
    #[inline(always)]
    pub fn hmax(a: F4) -> f32 {
        f32x4_extract_lane::<0>(a.0).max(f32x4_extract_lane::<1>(a.0)).max(f32x4_extract_lane::<2>(a.0).max(f32x4_extract_lane::<3>(a.0)))
    }
    /// The 4 × 4 block whose rows are `v`, transposed: lane `j` of row `i` becomes lane `i` of
    /// row `j` (eight shuffles).
    #[inline(always)]
    pub fn transpose4(v: [F4; 4]) -> [F4; 4] {
        let [a, b, c, d] = v.map(|x| x.0);
        let (ab01, ab23) = (i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
        let (cd01, cd23) = (i32x4_shuffle::<0, 4, 1, 5>(c, d), i32x4_shuffle::<2, 6, 3, 7>(c, d));
        [
            F4(i32x4_shuffle::<0, 1, 4, 5>(ab01, cd01)),
            F4(i32x4_shuffle::<2, 3, 6, 7>(ab01, cd01)),
            F4(i32x4_shuffle::<0, 1, 4, 5>(ab23, cd23)),
            F4(i32x4_shuffle::<2, 3, 6, 7>(ab23, cd23)),
        ]
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod lanes {
    #[derive(Clone, Copy)]
    pub struct F4(pub [f32; 4]);

    #[inline(always)]
    fn map(a: F4, f: impl Fn(f32) -> f32) -> F4 {
        F4(std::array::from_fn(|i| f(a.0[i])))
    }
    #[inline(always)]
    fn zip(a: F4, b: F4, f: impl Fn(f32, f32) -> f32) -> F4 {
        F4(std::array::from_fn(|i| f(a.0[i], b.0[i])))
    }
    #[inline(always)]
    pub fn splat(v: f32) -> F4 {
        F4([v; 4])
    }
    /// # Safety
    /// `p..p + 4` must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> F4 {
        F4(std::ptr::read_unaligned(p as *const [f32; 4]))
    }
    /// # Safety
    /// `p..p + 4` must be writable.
    #[inline(always)]
    pub unsafe fn store(p: *mut f32, v: F4) {
        std::ptr::write_unaligned(p as *mut [f32; 4], v.0)
    }
    #[inline(always)]
    pub fn mul_add(acc: F4, a: F4, b: F4) -> F4 {
        F4(std::array::from_fn(|i| acc.0[i] + a.0[i] * b.0[i]))
    }
    #[inline(always)]
    pub fn add(a: F4, b: F4) -> F4 {
        zip(a, b, |x, y| x + y)
    }
    #[inline(always)]
    pub fn sub(a: F4, b: F4) -> F4 {
        zip(a, b, |x, y| x - y)
    }
    #[inline(always)]
    pub fn mul(a: F4, b: F4) -> F4 {
        zip(a, b, |x, y| x * y)
    }
    #[inline(always)]
    pub fn div(a: F4, b: F4) -> F4 {
        zip(a, b, |x, y| x / y)
    }
    /// `b < a ? a : b`, like wasm's `pmax`.
    #[inline(always)]
    pub fn max(a: F4, b: F4) -> F4 {
        zip(a, b, |x, y| if y < x { x } else { y })
    }
    /// `b < a ? b : a`, like wasm's `pmin`.
    #[inline(always)]
    pub fn min(a: F4, b: F4) -> F4 {
        zip(a, b, |x, y| if y < x { y } else { x })
    }
    #[inline(always)]
    pub fn abs(a: F4) -> F4 {
        map(a, f32::abs)
    }
    #[inline(always)]
    pub fn nearest(a: F4) -> F4 {
        map(a, f32::round_ties_even)
    }
    #[inline(always)]
    pub fn pow2(n: F4) -> F4 {
        map(n, |n| f32::from_bits((((n as i32) + 127) << 23) as u32))
    }
    #[inline(always)]
    pub fn select_nonneg(c: F4, a: F4, b: F4) -> F4 {
        F4(std::array::from_fn(|i| if c.0[i] >= 0.0 { a.0[i] } else { b.0[i] }))
    }
    #[inline(always)]
    pub fn zero_below(c: F4, t: f32, a: F4) -> F4 {
        F4(std::array::from_fn(|i| if c.0[i] >= t { a.0[i] } else { 0.0 }))
    }
    #[inline(always)]
    pub fn sum(a: F4) -> f32 {
        (a.0[0] + a.0[1]) + (a.0[2] + a.0[3])
    }
    #[inline(always)]
    pub fn hmax(a: F4) -> f32 {
        a.0[0].max(a.0[1]).max(a.0[2].max(a.0[3]))
    }
    #[inline(always)]
    pub fn transpose4(v: [F4; 4]) -> [F4; 4] {
        std::array::from_fn(|j| F4(std::array::from_fn(|i| v[i].0[j])))
    }
}

pub use lanes::*;

/// `e^x` per lane, relative error ≤ 3e-7 for x in [-87, 88] (Cody–Waite reduction by ln 2,
/// then a degree-6 polynomial, as in Cephes' `expf`). Below -87 (and for -∞ and NaN) it
/// returns exactly 0, so softmax gives masked or banned entries no mass at all.
#[inline(always)]
pub fn exp(x_in: F4) -> F4 {
    let x = min(max(x_in, splat(-87.0)), splat(88.0));
    let n = nearest(mul(x, splat(std::f32::consts::LOG2_E)));
    // ln 2 in two parts: n · LN2_HI is exact in f32, so the reduction loses nothing.
    let r = sub(sub(x, mul(n, splat(0.693_359_4))), mul(n, splat(-2.121_944_4e-4)));
    let mut p = splat(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = mul_add(splat(c), p, r);
    }
    let y = add(mul_add(r, p, mul(r, r)), splat(1.0));
    zero_below(x_in, -87.0, mul(y, pow2(n)))
}

/// Exact GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))`, per lane; absolute error ≤ 4e-7 · |x|.
/// `1 - erf(z)` comes straight from Abramowitz & Stegun 7.1.26 (`poly(t) · e^{-z²}`,
/// t = 1 / (1 + p·z), |error| ≤ 1.5e-7), so negative inputs lose no digits to cancellation.
#[inline(always)]
pub fn gelu_erf(x: F4) -> F4 {
    mul(x, normal_cdf(x).0)
}

/// The slope of exact GELU, `Φ(x) + x · φ(x)`, per lane (training's backward).
#[inline(always)]
pub fn gelu_erf_slope(x: F4) -> F4 {
    let (cdf, e) = normal_cdf(x);
    // φ(x) = e^{-x²/2} / √(2π)
    mul_add(cdf, mul(x, e), splat(0.398_942_3))
}

/// `(Φ(x), e^{-x²/2})`: the standard normal's CDF ([`gelu_erf`]'s method) and the Gaussian
/// factor it computes on the way.
#[inline(always)]
fn normal_cdf(x: F4) -> (F4, F4) {
    let z = mul(abs(x), splat(std::f32::consts::FRAC_1_SQRT_2));
    let t = div(splat(1.0), mul_add(splat(1.0), splat(0.327_591_1), z));
    let mut p = splat(1.061_405_4);
    for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        p = mul_add(splat(c), p, t);
    }
    let e = exp(sub(splat(0.0), mul(z, z)));
    // Φ(x) = 1 - erfc/2 for x ≥ 0, erfc/2 below.
    let half = mul(mul(mul(p, t), e), splat(0.5));
    (select_nonneg(x, sub(splat(1.0), half), half), e)
}

/// `transformers`' `gelu_new`: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, with
/// `1 + tanh(u) = 2 / (1 + e^{-2u})`.
#[inline(always)]
pub fn gelu_tanh(x: F4) -> F4 {
    mul(x, tanh_gate(x))
}

/// The slope of `gelu_new`: with `s = σ(2u)`, `s + x · s · (1 - s) · 2u'(x)`.
#[inline(always)]
pub fn gelu_tanh_slope(x: F4) -> F4 {
    let c = (2.0f32 / std::f32::consts::PI).sqrt();
    let s = tanh_gate(x);
    let du = mul(splat(2.0 * c), mul_add(splat(1.0), splat(3.0 * 0.044_715), mul(x, x)));
    mul_add(s, mul(mul(x, s), sub(splat(1.0), s)), du)
}

/// `(1 + tanh(u)) / 2 = σ(2u)` with `u = √(2/π) · (x + 0.044715 x³)`.
#[inline(always)]
fn tanh_gate(x: F4) -> F4 {
    let c = (2.0f32 / std::f32::consts::PI).sqrt();
    let u = mul(mul(x, splat(c)), mul_add(splat(1.0), splat(0.044_715), mul(x, x)));
    div(splat(1.0), add(splat(1.0), exp(mul(u, splat(-2.0)))))
}

/// Applies `f` to `xs` in place, four lanes at a time (the tail through a padded copy).
#[inline(always)]
pub fn map_in_place(xs: &mut [f32], f: impl Fn(F4) -> F4) {
    let mut chunks = xs.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: the chunk holds exactly four floats.
        unsafe { store(c.as_mut_ptr(), f(load(c.as_ptr()))) }
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut pad = [0f32; 4];
        pad[..tail.len()].copy_from_slice(tail);
        // SAFETY: `pad` holds four floats.
        unsafe { store(pad.as_mut_ptr(), f(load(pad.as_ptr()))) }
        let n = tail.len();
        tail.copy_from_slice(&pad[..n]);
    }
}

/// `row[i] = e^(row[i] - max(row))` in place; returns the sum (softmax without its division,
/// which the caller may apply later to fewer values).
pub fn exp_shifted_row(row: &mut [f32]) -> f32 {
    let mut m = splat(f32::NEG_INFINITY);
    let mut chunks = row.chunks_exact(4);
    for c in &mut chunks {
        // SAFETY: four floats.
        m = max(m, unsafe { load(c.as_ptr()) });
    }
    let top = chunks.remainder().iter().fold(hmax(m), |a, &b| a.max(b));
    let top4 = splat(top);
    let mut acc = splat(0.0);
    let mut chunks = row.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: four floats.
        unsafe {
            let e = exp(sub(load(c.as_ptr()), top4));
            store(c.as_mut_ptr(), e);
            acc = add(acc, e);
        }
    }
    let mut s = sum(acc);
    let tail = chunks.into_remainder();
    let n = tail.len();
    if n > 0 {
        let mut pad = [f32::NEG_INFINITY; 4];
        pad[..n].copy_from_slice(tail);
        // SAFETY: four floats.
        let e = unsafe { exp(sub(load(pad.as_ptr()), top4)) };
        // SAFETY: four floats.
        unsafe { store(pad.as_mut_ptr(), e) };
        tail.copy_from_slice(&pad[..n]);
        s += pad[..n].iter().sum::<f32>();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes_of(f: impl Fn(F4) -> F4, x: f32) -> f32 {
        let mut v = [x; 4];
        map_in_place(&mut v, f);
        v[0]
    }

    #[test]
    fn exp_is_close_to_the_standard_library() {
        let mut worst = 0f64;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let got = lanes_of(exp, x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(lanes_of(exp, f32::NEG_INFINITY), 0.0);
        assert_eq!(lanes_of(exp, f32::NAN), 0.0);
        assert_eq!(lanes_of(exp, -88.0), 0.0);
    }

    #[test]
    fn gelus_match_their_definitions() {
        let mut worst = [0f64; 2];
        for i in -1000..=1000 {
            let x = i as f64 / 100.0;
            let erf_ref = x * 0.5 * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
            let c = (2.0f64 / std::f64::consts::PI).sqrt();
            let tanh_ref = 0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh());
            worst[0] = worst[0].max((lanes_of(gelu_erf, x as f32) as f64 - erf_ref).abs());
            worst[1] = worst[1].max((lanes_of(gelu_tanh, x as f32) as f64 - tanh_ref).abs());
        }
        // |x| ≤ 10: 4e-7 · 10 from the approximation plus f32 rounding of values up to 10.
        assert!(worst[0] < 5e-6 && worst[1] < 5e-6, "max |error| erf {} tanh {}", worst[0], worst[1]);
    }

    /// erf in f64 by its Maclaurin series / continued fraction, as a reference independent of
    /// the approximation under test.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut sum = 0f64;
            let mut term = x;
            for n in 0..200 {
                sum += term / (2 * n + 1) as f64;
                term *= -x * x / (n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(z) = e^{-z²}/(z√π) · 1/(1 + 1/(2z²)/(1 + 2/(2z²)/(1 + …))) — continued fraction.
            let z = x.abs();
            let mut f = 0f64;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (z + f);
            }
            let erfc = (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f);
            x.signum() * (1.0 - erfc)
        }
    }

    #[test]
    fn shifted_exponentials_give_the_softmax_for_awkward_lengths() {
        for n in [1usize, 3, 4, 7, 33] {
            let mut row: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin() * 20.0).collect();
            let want: Vec<f64> = {
                let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            };
            let z = exp_shifted_row(&mut row);
            for (g, w) in row.iter().map(|v| v / z).zip(&want) {
                assert!((g as f64 - w).abs() < 1e-6, "{n}: {g} vs {w}");
            }
        }
    }
}
