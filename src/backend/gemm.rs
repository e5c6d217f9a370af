//! Our f32 matrix multiply for the inference path: `y = x · Wᵀ + b` with `W` stored as
//! Hugging Face keeps it (`[out, in]`, row-major), so weights need no repacking.
//!
//! Why our own: candle's matmul compiled to wasm32 runs ~3× slower than natively and its
//! quantized matmul ~11× (`shared/notes/wasm-and-webgpu.md`). This kernel computes register
//! tiles of 3 rows of `x` × 3 rows of `W` as dot products along `k` with 4-lane vectors
//! ([`super::simd`]; 9 accumulators + 3 + 1 operands: fits the 16 vector registers V8 gives
//! wasm SIMD on x86), and walks `W` in blocks of rows that stay in L2 while every row of `x`
//! passes. Natively candle's AVX/AVX-512 GEMM is faster and stays the default (see [`use_own`]).

use std::cell::Cell;

use super::simd::{self as lanes, F4 as V};

thread_local! {
    // Per thread, so that tests comparing both kernels do not race each other.
    static OWN: Cell<bool> = const { Cell::new(cfg!(target_arch = "wasm32")) };
}

/// Chooses this kernel (true) or candle's matmul (false) for inference linears on the calling
/// thread. The default is the faster one measured per platform: ours in wasm32, candle's
/// natively.
pub fn use_own(on: bool) {
    OWN.with(|o| o.set(on));
}

pub fn own_enabled() -> bool {
    OWN.with(|o| o.get())
}

const TR: usize = 3;
const TC: usize = 3;

/// Rows of `W` per cache block: 48 rows × 384 floats = 72 KiB (f32; 18 KiB as int8), an
/// L2-resident block that all rows of `x` reuse.
const BLOCK_N: usize = 48;

/// A kernel that computes one `R × C` tile of `out`: rows `i..i+R` of `x` against rows
/// `j..j+C` of `W` (this f32 kernel, and the integer one in [`super::int8`]).
pub(super) trait Tiles {
    fn tile<const R: usize, const C: usize>(&self, i: usize, j: usize, out: &mut [f32]);
}

/// Covers `out[m × n]` with `TR × TC` tiles of `kernel`, `W` in blocks of [`BLOCK_N`] rows;
/// the edges in tiles one row or one column wide.
#[inline(always)]
pub(super) fn for_each_tile<K: Tiles, const TR: usize, const TC: usize>(kernel: &K, m: usize, n: usize, out: &mut [f32]) {
    for n0 in (0..n).step_by(BLOCK_N) {
        let n1 = (n0 + BLOCK_N).min(n);
        let mut i = 0;
        while i + TR <= m {
            row_block::<K, TR, TC>(kernel, i, n0, n1, out);
            i += TR;
        }
        while i < m {
            row_block::<K, 1, TC>(kernel, i, n0, n1, out);
            i += 1;
        }
    }
}

#[inline(always)]
fn row_block<K: Tiles, const R: usize, const TC: usize>(kernel: &K, i: usize, n0: usize, n1: usize, out: &mut [f32]) {
    let mut j = n0;
    while j + TC <= n1 {
        kernel.tile::<R, TC>(i, j, out);
        j += TC;
    }
    while j < n1 {
        kernel.tile::<R, 1>(i, j, out);
        j += 1;
    }
}

/// `out[m × n] = x[m × k] · w[n × k]ᵀ (+ bias[n])`.
pub fn matmul_t(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize, out: &mut [f32]) {
    assert!(x.len() >= m * k && w.len() >= n * k && out.len() >= m * n, "matmul_t: slices too short");
    assert!(bias.is_none_or(|b| b.len() >= n), "matmul_t: bias too short");
    for_each_tile::<_, TR, TC>(&Operands { x, w, bias, k, n }, m, n, out);
}

struct Operands<'a> {
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    k: usize,
    n: usize,
}

impl Tiles for Operands<'_> {
    /// Dot products of rows `i..i+R` of `x` with rows `j..j+C` of `w`.
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(&self, i: usize, j: usize, out: &mut [f32]) {
        let p = self;
        let k = p.k;
        let k4 = k / 4 * 4;
        let xr: [*const f32; R] = std::array::from_fn(|r| p.x[(i + r) * k..].as_ptr());
        let wr: [*const f32; C] = std::array::from_fn(|c| p.w[(j + c) * k..].as_ptr());
        let mut acc = [[lanes::splat(0.0); C]; R];
        let mut kk = 0;
        while kk < k4 {
            // SAFETY: rows i..i+R of x and j..j+C of w hold k floats each (checked in matmul_t),
            // and kk + 4 <= k.
            unsafe {
                let xs: [V; R] = std::array::from_fn(|r| lanes::load(xr[r].add(kk)));
                for c in 0..C {
                    let wv = lanes::load(wr[c].add(kk));
                    for r in 0..R {
                        acc[r][c] = lanes::mul_add(acc[r][c], xs[r], wv);
                    }
                }
            }
            kk += 4;
        }
        for r in 0..R {
            for c in 0..C {
                let mut s = lanes::sum(acc[r][c]);
                for t in k4..k {
                    s += p.x[(i + r) * k + t] * p.w[(j + c) * k + t];
                }
                if let Some(b) = p.bias {
                    s += b[j + c];
                }
                out[(i + r) * p.n + j + c] = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for t in 0..k {
                    s += x[i * k + t] as f64 * w[j * k + t] as f64;
                }
                y[i * n + j] = s as f32 + b.map_or(0.0, |b| b[j]);
            }
        }
        y
    }

    #[test]
    fn matches_a_plain_loop_on_awkward_shapes() {
        let mut rng = crate::diffusion::rng::Rng::new(3);
        // Sizes that are not multiples of the 3 × 3 tile, the 4 lanes or the 48-row block.
        for &(m, k, n) in &[(1, 1, 1), (2, 3, 5), (7, 9, 50), (3, 4, 3), (10, 37, 97), (4, 384, 101)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.5).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.next_f32() - 0.5).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
            for bias in [None, Some(b.as_slice())] {
                let mut y = vec![f32::NAN; m * n];
                matmul_t(&x, &w, bias, m, k, n, &mut y);
                let want = reference(&x, &w, bias, m, k, n);
                for (a, e) in y.iter().zip(&want) {
                    assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()) * (k as f32).sqrt(), "{m}×{k}×{n}: {a} vs {e}");
                }
            }
        }
    }
}
