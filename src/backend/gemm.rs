//! Our f32 matrix multiply for the inference path: `y = x · Wᵀ + b` with `W` stored as
//! Hugging Face keeps it (`[out, in]`, row-major), so weights need no repacking.
//!
//! Why our own: candle's matmul compiled to wasm32 runs ~3× slower than natively and its
//! quantized matmul ~11× (`shared/notes/wasm-and-webgpu.md`). This kernel computes register
//! tiles of 3 rows of `x` × 3 rows of `W` as dot products along `k` with 4-lane vectors
//! ([`super::simd`]; 9 accumulators + 3 + 1 operands: fits the 16 vector registers V8 gives
//! wasm SIMD on x86), and walks `W` in blocks of rows that stay in L2 while every row of `x`
//! passes. Natively candle's AVX/AVX-512 GEMM is faster and stays the default (see [`super::Kernels`]).

use super::par::{self, Out};
use super::simd::{self as lanes, F4 as V};

const TR: usize = 3;
const TC: usize = 3;

/// Rows of `W` per cache block: 48 rows × 384 floats = 72 KiB (f32; 18 KiB as int8), an
/// L2-resident block that all rows of `x` reuse.
const BLOCK_N: usize = 48;

/// Rows of `x` per task: a multiple of both kernels' tile heights (3 here, 4 in
/// [`super::int8`]), so tasks add no edge tiles but the last.
const TASK_ROWS: usize = 48;

/// Tasks a product should split into, where its rows allow: enough that up to 8 threads share
/// them evenly. At [`TASK_ROWS`] a `128 × 128` weight gradient would be 9 tasks: on 2 threads
/// one would run alone for a ninth of it, on 8 threads for half.
const MIN_TASKS: usize = 32;

/// Rows of `x` per task of an `m`-row product split `col_tasks` ways by columns:
/// [`TASK_ROWS`], halved down to 12 (still a multiple of both tile heights) while that gives
/// fewer than [`MIN_TASKS`]. It depends on the shape alone, so neither does any output bit
/// on the thread count.
fn task_rows(m: usize, col_tasks: usize) -> usize {
    let mut rows = TASK_ROWS;
    while rows > 12 && m.div_ceil(rows) * col_tasks < MIN_TASKS {
        rows /= 2;
    }
    rows
}

/// A kernel that computes one `R × C` tile of `out`: rows `i..i+R` of `x` against rows
/// `j..j+C` of `W` (this f32 kernel, and the integer one in [`super::int8`]). Each output is
/// the same instructions whatever `R` and `C` are, so the task split changes no bit.
pub(super) trait Tiles: Sync {
    fn tile<const R: usize, const C: usize>(&self, i: usize, j: usize, out: &Out);
}

/// Covers `out[m × n]` with `TR × TC` tiles of `kernel`, the edges in tiles one row or one
/// column wide. Tasks (run across the thread pool, [`par`]) are blocks of [`BLOCK_N`] rows of
/// `W` × [`task_rows`] rows of `x`, ordered so that one thread's consecutive tasks reuse the
/// same L2-resident block of `W`.
#[inline(always)]
pub(super) fn for_each_tile<K: Tiles, const TR: usize, const TC: usize>(kernel: &K, m: usize, n: usize, out: &Out) {
    let col_tasks = n.div_ceil(BLOCK_N);
    let rows = task_rows(m, col_tasks);
    let row_tasks = m.div_ceil(rows);
    par::for_each(row_tasks * col_tasks, |t| {
        let (n0, i0) = (t / row_tasks * BLOCK_N, t % row_tasks * rows);
        let (n1, i1) = ((n0 + BLOCK_N).min(n), (i0 + rows).min(m));
        let mut i = i0;
        while i + TR <= i1 {
            row_block::<K, TR, TC>(kernel, i, n0, n1, out);
            i += TR;
        }
        while i < i1 {
            row_block::<K, 1, TC>(kernel, i, n0, n1, out);
            i += 1;
        }
    });
}

#[inline(always)]
fn row_block<K: Tiles, const R: usize, const TC: usize>(kernel: &K, i: usize, n0: usize, n1: usize, out: &Out) {
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

/// `out[m × n] = x[m × k] · w[n × k]ᵀ (+ bias[n])`; writes every element of `out`'s first
/// `m × n` (so its buffer may come from [`par::written`]).
pub fn matmul_t(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize, out: &Out) {
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
    fn tile<const R: usize, const C: usize>(&self, i: usize, j: usize, out: &Out) {
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
                out.set((i + r) * p.n + j + c, s);
            }
        }
    }
}

/// `out[m × n] = x[m × k] · w[k × n]` (`w` not transposed): for attention, where `k` is a
/// head's width (32) or the sequence. Outer products instead of dot products: each step
/// broadcasts one element of `x` against a row segment of `w`, so no lane sums are left at
/// the end (with `k` = 32, [`matmul_t`] spent as much on those as on the products).
pub fn matmul_nn(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    assert!(x.len() >= m * k && w.len() >= k * n && out.len() >= m * n, "matmul_nn: slices too short");
    nn_block::<false>(x, w, m, k, n, out);
}

/// `out[m × n] += x[m × k] · w[k × n]`, blocks of [`TASK_ROWS`] rows across the pool: LoRA's
/// rank-`k` term added into the frozen weight's product where it lies, rather than as a
/// product of its own (dot products of length `k` = 8 are mostly lane sums) and a pass that
/// adds it.
pub fn add_matmul_nn(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, out: &Out) {
    assert!(x.len() >= m * k && w.len() >= k * n && out.len() >= m * n, "add_matmul_nn: slices too short");
    par::for_each(m.div_ceil(TASK_ROWS), |t| {
        let (i0, i1) = (t * TASK_ROWS, ((t + 1) * TASK_ROWS).min(m));
        // SAFETY: rows i0..i1 of out belong to this task alone.
        let rows = unsafe { out.slice(i0 * n, (i1 - i0) * n) };
        nn_block::<true>(&x[i0 * k..i1 * k], w, i1 - i0, k, n, rows);
    });
}

/// [`matmul_nn`], or with `ADD` its sum into `out`.
fn nn_block<const ADD: bool>(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    let n8 = n / NN_COLS * NN_COLS;
    let mut i = 0;
    while i + NN_ROWS <= m {
        nn_rows::<NN_ROWS, ADD>(x, w, i, k, n, n8, out);
        i += NN_ROWS;
    }
    while i < m {
        nn_rows::<1, ADD>(x, w, i, k, n, n8, out);
        i += 1;
    }
}

/// Edge of the squares of `x` that [`transpose`] hands out as tasks: 64 × 64 floats, 16 KiB
/// read and 16 KiB written, so that even a `1024 × 128` activation splits into 32 tasks.
const TRANSPOSE_EDGE: usize = 64;

/// `out[c × r] = xᵀ` for `x[r × c]`, in squares of [`TRANSPOSE_EDGE`] across the pool, each
/// in 4 × 4 blocks of vector shuffles; writes every element of `out`'s first `r × c`.
pub fn transpose(x: &[f32], r: usize, c: usize, out: &Out) {
    assert!(x.len() >= r * c && out.len() >= r * c, "transpose: slices too short");
    let row_tasks = r.div_ceil(TRANSPOSE_EDGE);
    par::for_each(row_tasks * c.div_ceil(TRANSPOSE_EDGE), |t| {
        let (i0, j0) = (t % row_tasks * TRANSPOSE_EDGE, t / row_tasks * TRANSPOSE_EDGE);
        let (i1, j1) = ((i0 + TRANSPOSE_EDGE).min(r), (j0 + TRANSPOSE_EDGE).min(c));
        // Elements i0..i1 of output rows j0..j1 belong to this task alone.
        let mut j = j0;
        while j + 4 <= j1 {
            let mut i = i0;
            while i + 4 <= i1 {
                // SAFETY: rows i..i + 4 of x hold columns j..j + 4 (i + 4 <= r, j + 4 <= c), and
                // output rows j..j + 4 hold columns i..i + 4 (both within r × c, asserted above).
                unsafe {
                    let rows = std::array::from_fn(|a| lanes::load(x.as_ptr().add((i + a) * c + j)));
                    for (b, v) in lanes::transpose4(rows).into_iter().enumerate() {
                        lanes::store(out.at((j + b) * r + i), v);
                    }
                }
                i += 4;
            }
            for i in i..i1 {
                for b in 0..4 {
                    out.set((j + b) * r + i, x[i * c + j + b]);
                }
            }
            j += 4;
        }
        for j in j..j1 {
            for i in i0..i1 {
                out.set(j * r + i, x[i * c + j]);
            }
        }
    });
}

/// `x[r × c]ᵀ` in a vector of its own, by [`transpose`].
pub fn transposed(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    // SAFETY: transpose writes all r × c outputs.
    let t = unsafe { par::written(r * c, |o| Ok::<_, std::convert::Infallible>(transpose(x, r, c, o))) };
    t.unwrap_or_else(|never| match never {})
}

/// `out[p × q] = aᵀ · b` for `a [m × p]` and `b [m × q]`: a reduction over the rows, as the
/// gradients of LoRA's thin factors are (`p` or `q` is the rank), without transposing either
/// operand (the `m × k` transposes that [`matmul_t`] needs cost more than these products).
/// Tasks across the pool are blocks of [`NN_COLS`] columns; within one, [`NN_ROWS`] output rows
/// at a time sum over `m` in registers (accumulating in memory would cost two loads and a
/// store per multiply-add). Each output sums its rows in order, whatever the thread count.
/// Writes every element of `out`'s first `p × q`.
pub fn matmul_tn(a: &[f32], b: &[f32], m: usize, p: usize, q: usize, out: &Out) {
    assert!(a.len() >= m * p && b.len() >= m * q && out.len() >= p * q, "matmul_tn: slices too short");
    par::for_each(q.div_ceil(NN_COLS), |t| {
        let (j0, j1) = (t * NN_COLS, ((t + 1) * NN_COLS).min(q));
        let mut i = 0;
        while i + NN_ROWS <= p {
            tn_block::<NN_ROWS>(a, b, m, p, q, i, j0, j1, out);
            i += NN_ROWS;
        }
        while i < p {
            tn_block::<1>(a, b, m, p, q, i, j0, j1, out);
            i += 1;
        }
    });
}

/// Rows `i..i + R` and columns `j0..j1` (at most [`NN_COLS`]) of [`matmul_tn`]'s output.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tn_block<const R: usize>(a: &[f32], b: &[f32], m: usize, p: usize, q: usize, i: usize, j0: usize, j1: usize, out: &Out) {
    let mut row = [0f32; NN_COLS];
    if j1 - j0 == NN_COLS {
        let mut acc = [[lanes::splat(0.0); 2]; R];
        for t in 0..m {
            // SAFETY: row t of b has q ≥ j0 + 8 floats.
            let bv = unsafe { [lanes::load(b.as_ptr().add(t * q + j0)), lanes::load(b.as_ptr().add(t * q + j0 + 4))] };
            for (r, acc) in acc.iter_mut().enumerate() {
                let s = lanes::splat(a[t * p + i + r]);
                acc[0] = lanes::mul_add(acc[0], s, bv[0]);
                acc[1] = lanes::mul_add(acc[1], s, bv[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: eight floats.
            unsafe {
                lanes::store(row.as_mut_ptr(), acc[0]);
                lanes::store(row.as_mut_ptr().add(4), acc[1]);
            }
            // SAFETY: columns j0..j1 of every output row belong to this task alone.
            unsafe { out.slice((i + r) * q + j0, NN_COLS) }.copy_from_slice(&row);
        }
    } else {
        let w = j1 - j0;
        for r in 0..R {
            row[..w].fill(0.0);
            for t in 0..m {
                let s = a[t * p + i + r];
                row[..w].iter_mut().zip(&b[t * q + j0..t * q + j1]).for_each(|(o, &v)| *o += s * v);
            }
            // SAFETY: as above.
            unsafe { out.slice((i + r) * q + j0, w) }.copy_from_slice(&row[..w]);
        }
    }
}

/// 4 rows × 8 columns: 8 accumulators + 2 loads + 1 broadcast registers.
const NN_ROWS: usize = 4;
const NN_COLS: usize = 8;

#[inline(always)]
fn nn_rows<const R: usize, const ADD: bool>(x: &[f32], w: &[f32], i: usize, k: usize, n: usize, n8: usize, out: &mut [f32]) {
    for j in (0..n8).step_by(NN_COLS) {
        // SAFETY: row i + r of out has n floats and j + 8 <= n.
        let mut acc: [[V; 2]; R] = std::array::from_fn(|r| match ADD {
            true => unsafe { [lanes::load(out.as_ptr().add((i + r) * n + j)), lanes::load(out.as_ptr().add((i + r) * n + j + 4))] },
            false => [lanes::splat(0.0); 2],
        });
        for t in 0..k {
            // SAFETY: row t of w has n floats and j + 8 <= n8 <= n (checked in matmul_nn).
            let wv = unsafe { [lanes::load(w.as_ptr().add(t * n + j)), lanes::load(w.as_ptr().add(t * n + j + 4))] };
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = lanes::splat(x[(i + r) * k + t]);
                a[0] = lanes::mul_add(a[0], xv, wv[0]);
                a[1] = lanes::mul_add(a[1], xv, wv[1]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: row i + r of out has n floats and j + 8 <= n.
            unsafe {
                lanes::store(out.as_mut_ptr().add((i + r) * n + j), a[0]);
                lanes::store(out.as_mut_ptr().add((i + r) * n + j + 4), a[1]);
            }
        }
    }
    for r in 0..R {
        for j in n8..n {
            let s: f32 = (0..k).map(|t| x[(i + r) * k + t] * w[t * n + j]).sum();
            out[(i + r) * n + j] = if ADD { out[(i + r) * n + j] + s } else { s };
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
    fn untransposed_product_matches_a_plain_loop_on_awkward_shapes() {
        let mut rng = crate::rng::Rng::new(5);
        // Rows not a multiple of 4, columns not a multiple of 8, and attention's own shapes.
        for &(m, k, n) in &[(1, 1, 1), (3, 2, 7), (5, 9, 8), (7, 32, 33), (9, 300, 32), (12, 32, 256)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.5).collect();
            let w: Vec<f32> = (0..k * n).map(|_| rng.next_f32() - 0.5).collect();
            let wt: Vec<f32> = (0..n * k).map(|q| w[(q % k) * n + q / k]).collect();
            let mut y = vec![f32::NAN; m * n];
            matmul_nn(&x, &w, m, k, n, &mut y);
            let want = reference(&x, &wt, None, m, k, n);
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()) * (k as f32).sqrt(), "{m}×{k}×{n}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn added_product_matches_a_plain_loop_on_awkward_shapes() {
        let mut rng = crate::rng::Rng::new(11);
        // Rows around the 4-row tile and the 48-row task, columns around the 8 lanes; LoRA's
        // rank-8 inner dimension.
        for &(m, k, n) in &[(1, 1, 1), (5, 3, 7), (51, 8, 131), (96, 8, 384), (7, 2, 8)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.5).collect();
            let w: Vec<f32> = (0..k * n).map(|_| rng.next_f32() - 0.5).collect();
            let before: Vec<f32> = (0..m * n).map(|_| rng.next_f32() - 0.5).collect();
            let mut y = before.clone();
            add_matmul_nn(&x, &w, m, k, n, &Out::new(&mut y));
            for i in 0..m {
                for j in 0..n {
                    let e = before[i * n + j] + (0..k).map(|t| x[i * k + t] * w[t * n + j]).sum::<f32>();
                    assert!((y[i * n + j] - e).abs() <= 1e-5, "{m}×{k}×{n} at ({i}, {j}): {} vs {e}", y[i * n + j]);
                }
            }
        }
    }

    #[test]
    fn transposed_left_product_matches_a_plain_loop_on_awkward_shapes() {
        let mut rng = crate::rng::Rng::new(7);
        // Column counts around the 4 lanes and the 64-column task, LoRA's rank-8 shapes.
        for &(m, p, q) in &[(1, 1, 1), (5, 3, 7), (37, 8, 131), (64, 8, 384), (33, 200, 8)] {
            let a: Vec<f32> = (0..m * p).map(|_| rng.next_f32() - 0.5).collect();
            let b: Vec<f32> = (0..m * q).map(|_| rng.next_f32() - 0.5).collect();
            let mut y = vec![f32::NAN; p * q];
            matmul_tn(&a, &b, m, p, q, &Out::new(&mut y));
            // aᵀ · b = (aᵀ) · (bᵀ)ᵀ: the plain loop on transposed copies.
            let t = |x: &[f32], r: usize, c: usize| (0..r * c).map(|i| x[(i % r) * c + i / r]).collect::<Vec<f32>>();
            let want = reference(&t(&a, m, p), &t(&b, m, q), None, p, m, q);
            for (x, e) in y.iter().zip(&want) {
                assert!((x - e).abs() <= 1e-5 * (1.0 + e.abs()) * (m as f32).sqrt(), "{m}×{p}×{q}: {x} vs {e}");
            }
        }
    }

    #[test]
    fn transpose_matches_a_plain_loop_on_awkward_shapes() {
        // Sides around the 4 × 4 block and the 64-element task edge.
        for &(r, c) in &[(1, 1), (3, 5), (4, 4), (7, 9), (64, 64), (65, 3), (130, 67), (5, 200)] {
            let x: Vec<f32> = (0..r * c).map(|v| v as f32).collect();
            let mut y = vec![f32::NAN; r * c];
            transpose(&x, r, c, &Out::new(&mut y));
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(y[j * r + i], x[i * c + j], "{r}×{c} at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn matches_a_plain_loop_on_awkward_shapes() {
        let mut rng = crate::rng::Rng::new(3);
        // Sizes that are not multiples of the 3 × 3 tile, the 4 lanes or the 48-row block.
        for &(m, k, n) in &[(1, 1, 1), (2, 3, 5), (7, 9, 50), (3, 4, 3), (10, 37, 97), (4, 384, 101)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.5).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.next_f32() - 0.5).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
            for bias in [None, Some(b.as_slice())] {
                let mut y = vec![f32::NAN; m * n];
                matmul_t(&x, &w, bias, m, k, n, &Out::new(&mut y));
                let want = reference(&x, &w, bias, m, k, n);
                for (a, e) in y.iter().zip(&want) {
                    assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()) * (k as f32).sqrt(), "{m}×{k}×{n}: {a} vs {e}");
                }
            }
        }
    }
}
