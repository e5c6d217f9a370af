// `out[m × n] = act(x[m × k] · w[n × k]ᵀ + bias)`: 64 × 64 output tiles per workgroup of
// 16 × 16 threads, each thread a 4 × 4 register block; 64 × 16 slices of `x` and `w` staged
// in workgroup memory. `act` as in activations.wgsl; with `q8`, `W` is q8_0 — int8 quants
// packed four to a u32 in `wq` with one f32 scale per 32 weights in `ws8` — dequantized
// while loading the tile.
//
// Split-K (`k_slice` > 0, a multiple of 16): workgroup z sums only `k` in `[z·k_slice, (z+1)·k_slice)` and
// writes its raw partial sums to `out[z][m × n]`; split_sum.wgsl adds them up with the bias
// and activation. A 256-token model has few 64 × 64 tiles (24 for 256 × 384: a GPU with
// 132 SMs stays mostly idle) and each walks all of `k` serially, so slicing `k` gives the
// GPU more, shorter workgroups.

struct Params { m: u32, n: u32, k: u32, k_slice: u32, has_bias: u32, act: u32, q8: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> wq: array<u32>;
@group(0) @binding(6) var<storage, read> ws8: array<f32>;

fn weight(i: u32, q8: bool) -> f32 {
  if (q8) {
    let word = wq[min(i / 4u, arrayLength(&wq) - 1u)];
    let q = bitcast<i32>(word << (24u - 8u * (i % 4u))) >> 24u;
    return f32(q) * ws8[min(i / 32u, arrayLength(&ws8) - 1u)];
  }
  return w[min(i, arrayLength(&w) - 1u)];
}

const TS: u32 = 64u;
const TK: u32 = 16u;
// Tiles are stored k-major with a padded row (65): a thread's 4 rows / 4 columns are 16 apart,
// so the 16 threads of a row read 16 consecutive words (no shared-memory bank conflicts; the
// first version read with a stride of 64 words, all in one bank), and the transposing stores
// collide at most 2-way.
const LD: u32 = 65u;
var<workgroup> xs: array<f32, 1040>;
var<workgroup> ws: array<f32, 1040>;

// Element `e` (0..1024) of the 64 × 16 slice of `x` (rows from row0) or `w` (rows from col0)
// at k0: zero past the matrix and past the end of this workgroup's k range.
fn x_at(e: u32, row0: u32, k0: u32, kend: u32) -> f32 {
  let r = row0 + e / TK;
  let c = k0 + e % TK;
  return select(0.0, x[min(r * p.k + c, arrayLength(&x) - 1u)], r < p.m && c < kend);
}

fn w_at(e: u32, col0: u32, k0: u32, kend: u32, q8: bool) -> f32 {
  let r = col0 + e / TK;
  let c = k0 + e % TK;
  return select(0.0, weight(r * p.k + c, q8), r < p.n && c < kend);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let m = p.m; let n = p.n; let k = p.k;
  let split = p.k_slice != 0u;
  let kbeg = select(0u, wid.z * p.k_slice, split);
  let kend = select(k, min(k, kbeg + p.k_slice), split);
  let row0 = wid.y * TS;
  let col0 = wid.x * TS;
  let tid = lid.y * 16u + lid.x;
  let q8 = p.q8 != 0u;
  // This thread's share of a slice: elements tid + 256·i, i.e. column tid % 16 of rows
  // tid / 16 + 16·i. The next slice is fetched into registers before the current one is
  // multiplied, so its global-memory latency overlaps the arithmetic.
  var nx = vec4f(x_at(tid, row0, kbeg, kend), x_at(tid + 256u, row0, kbeg, kend), x_at(tid + 512u, row0, kbeg, kend), x_at(tid + 768u, row0, kbeg, kend));
  var nw = vec4f(w_at(tid, col0, kbeg, kend, q8), w_at(tid + 256u, col0, kbeg, kend, q8), w_at(tid + 512u, col0, kbeg, kend, q8), w_at(tid + 768u, col0, kbeg, kend, q8));
  let so = (tid % TK) * LD + tid / TK;
  // Four vec4 accumulators, not an indexed array: indexing a function-local array with a
  // loop variable (bounds-checked by naga) kept it in memory instead of registers on the H100
  // (0.5 TFLOP/s); vectors and fma keep every operand in registers.
  var acc0 = vec4f(0.0); var acc1 = vec4f(0.0); var acc2 = vec4f(0.0); var acc3 = vec4f(0.0);
  for (var k0 = kbeg; k0 < kend; k0 += TK) {
    xs[so] = nx.x; xs[so + 16u] = nx.y; xs[so + 32u] = nx.z; xs[so + 48u] = nx.w;
    ws[so] = nw.x; ws[so + 16u] = nw.y; ws[so + 32u] = nw.z; ws[so + 48u] = nw.w;
    workgroupBarrier();
    let k1 = k0 + TK;
    if (k1 < kend) {
      nx = vec4f(x_at(tid, row0, k1, kend), x_at(tid + 256u, row0, k1, kend), x_at(tid + 512u, row0, k1, kend), x_at(tid + 768u, row0, k1, kend));
      nw = vec4f(w_at(tid, col0, k1, kend, q8), w_at(tid + 256u, col0, k1, kend, q8), w_at(tid + 512u, col0, k1, kend, q8), w_at(tid + 768u, col0, k1, kend, q8));
    }
    for (var kk = 0u; kk < TK; kk++) {
      let o = kk * LD;
      let a = vec4f(xs[o + lid.y], xs[o + lid.y + 16u], xs[o + lid.y + 32u], xs[o + lid.y + 48u]);
      let b = vec4f(ws[o + lid.x], ws[o + lid.x + 16u], ws[o + lid.x + 32u], ws[o + lid.x + 48u]);
      acc0 = fma(vec4f(a.x), b, acc0);
      acc1 = fma(vec4f(a.y), b, acc1);
      acc2 = fma(vec4f(a.z), b, acc2);
      acc3 = fma(vec4f(a.w), b, acc3);
    }
    workgroupBarrier();
  }
  let base = select(0u, wid.z * m * n, split);
  store(base, row0 + lid.y, col0 + lid.x, acc0, split);
  store(base, row0 + lid.y + 16u, col0 + lid.x, acc1, split);
  store(base, row0 + lid.y + 32u, col0 + lid.x, acc2, split);
  store(base, row0 + lid.y + 48u, col0 + lid.x, acc3, split);
}

// One row's four results, columns c0, c0 + 16, c0 + 32, c0 + 48: neighbouring threads write
// neighbouring columns (coalesced). Bias and activation are fused here, except for a split's
// partial sums.
fn store(base: u32, r: u32, c0: u32, v: vec4f, raw: bool) {
  let has_bias = p.has_bias != 0u;
  let kind = p.act;
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + 16u * j;
    if (r < p.m && c < p.n) {
      var y = v[j];
      if (!raw) {
        if (has_bias) { y = y + bias[c]; }
        y = act(y, kind);
      }
      out[base + r * p.n + c] = y;
    }
  }
}
