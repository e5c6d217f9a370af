//! The WGSL kernels of the forward pass. f32 only, no subgroups and no `shader-f16`
//! (SwiftShader, Chromium's software WebGPU, has neither). Every kernel reads its sizes from
//! one uniform of eight u32 (`P`), floats passed as their bits.

/// Shared header: the parameter block.
const HEADER: &str = r#"
struct P { a: u32, b: u32, c: u32, d: u32, e: u32, f: u32, g: u32, h: u32 }
@group(0) @binding(0) var<uniform> p: P;
"#;

/// Activations shared by the matmul epilogue and the split-K sum. `kind`: 0 none, 1 exact
/// GELU, 2 tanh GELU, 3 ReLU.
const ACTIVATIONS: &str = r#"
// erf by Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7): WGSL has no erf.
fn erf(v: f32) -> f32 {
  let s = sign(v);
  let a = abs(v);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return s * y;
}

fn act(v: f32, kind: u32) -> f32 {
  switch kind {
    case 1u: { return 0.5 * v * (1.0 + erf(v * 0.70710678118654752)); }
    case 2u: { return 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
    case 3u: { return max(v, 0.0); }
    default: { return v; }
  }
}
"#;

/// `out[m × n] = act(x[m × k] · w[n × k]ᵀ + bias)`: 64 × 64 output tiles per workgroup of
/// 16 × 16 threads, each thread a 4 × 4 register block; 64 × 16 slices of `x` and `w` staged
/// in workgroup memory. p: a = m, b = n, c = k, d = flags (bit 0: bias; bits 1–2: the
/// activation; bit 3: `W` is q8_0 — int8 quants packed four to a u32 in `wq` with one f32
/// scale per 32 weights in `ws8` — dequantized while loading the tile), e = split length.
///
/// Split-K (e > 0, a multiple of 16): workgroup z sums only `k` in `[z·e, (z+1)·e)` and
/// writes its raw partial sums to `out[z][m × n]`; [`SPLIT_SUM`] adds them up with the bias
/// and activation. A 256-token model has few 64 × 64 tiles (24 for 256 × 384: a GPU with
/// 132 SMs stays mostly idle) and each walks all of `k` serially, so slicing `k` gives the
/// GPU more, shorter workgroups.
pub const MATMUL: &str = r#"
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
  return select(0.0, x[min(r * p.c + c, arrayLength(&x) - 1u)], r < p.a && c < kend);
}

fn w_at(e: u32, col0: u32, k0: u32, kend: u32, q8: bool) -> f32 {
  let r = col0 + e / TK;
  let c = k0 + e % TK;
  return select(0.0, weight(r * p.c + c, q8), r < p.b && c < kend);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let m = p.a; let n = p.b; let k = p.c;
  let split = p.e != 0u;
  let kbeg = select(0u, wid.z * p.e, split);
  let kend = select(k, min(k, kbeg + p.e), split);
  let row0 = wid.y * TS;
  let col0 = wid.x * TS;
  let tid = lid.y * 16u + lid.x;
  let q8 = (p.d & 8u) != 0u;
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
  let has_bias = (p.d & 1u) != 0u;
  let kind = (p.d >> 1u) & 3u;
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + 16u * j;
    if (r < p.a && c < p.b) {
      var y = v[j];
      if (!raw) {
        if (has_bias) { y = y + bias[c]; }
        y = act(y, kind);
      }
      out[base + r * p.b + c] = y;
    }
  }
}
"#;

/// The end of a split-K matmul: `out[e] = act(Σ_z part[z][e] + bias[e % n])`.
/// p: a = m·n, b = n, c = splits, d = flags as [`MATMUL`]'s.
pub const SPLIT_SUM: &str = r#"
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.a) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.c; z++) { s = s + part[z * p.a + e]; }
  if ((p.d & 1u) != 0u) { s = s + bias[e % p.b]; }
  out[e] = act(s, (p.d >> 1u) & 3u);
}
"#;

/// Per row of `h`: `s = x + r` (when bit 0 of d), `y = (s − mean) / sqrt(var + eps) · g + b`;
/// `s` written back when bit 1 of d (pre-LN keeps the residual stream). One workgroup of 64
/// threads per row. p: a = rows, b = h, c = eps bits, d = flags.
pub const LAYER_NORM: &str = r#"
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> bb: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> s: array<f32>;

var<workgroup> part: array<f32, 64>;

fn total(v: f32, lid: u32) -> f32 {
  part[lid] = v;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
    if (lid < stride) { part[lid] = part[lid] + part[lid + stride]; }
    workgroupBarrier();
  }
  let t = part[0];
  workgroupBarrier();
  return t;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid3: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let row = wid.x + wid.y * 65535u;
  if (row >= p.a) { return; }
  let h = p.b;
  let lid = lid3.x;
  let base = row * h;
  let add = (p.d & 1u) != 0u;
  let keep = (p.d & 2u) != 0u;
  var sum = 0.0;
  for (var i = lid; i < h; i += 64u) {
    var v = x[base + i];
    if (add) { v = v + r[base + i]; }
    if (keep) { s[base + i] = v; }
    sum = sum + v;
  }
  let mean = total(sum, lid) / f32(h);
  var sq = 0.0;
  for (var i = lid; i < h; i += 64u) {
    var v = x[base + i];
    if (add) { v = v + r[base + i]; }
    sq = sq + (v - mean) * (v - mean);
  }
  let inv = inverseSqrt(total(sq, lid) / f32(h) + bitcast<f32>(p.c));
  for (var i = lid; i < h; i += 64u) {
    var v = x[base + i];
    if (add) { v = v + r[base + i]; }
    y[base + i] = (v - mean) * inv * g[i] + bb[i];
  }
}
"#;

/// Self-attention without masking (every sequence is full length): one workgroup of 64 per
/// (query, head). Keys go in chunks of 256: the threads score a chunk into shared memory (one
/// key each, q pre-scaled in shared memory), reduce its maximum, turn scores into weights, and
/// then each thread accumulates one or two of the head's dimensions over the chunk's values
/// (reads of v rows are coalesced), with an online-softmax rescale between chunks, so any
/// sequence length fits. The first version gave each (query, head) to a single invocation
/// (48 workgroups for 256 tokens × 12 heads, and its 128-float accumulator in memory): most of
/// a forward's time on the H100. q, out: [queries × heads·hd] (queries = the dispatch's x);
/// k, v: [keys × heads·hd]. p: a = keys, b = heads, c = hd (≤ 128), d = scale bits.
pub const ATTENTION: &str = r#"
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const KC: u32 = 256u;
var<workgroup> qs: array<f32, 128>;
var<workgroup> sc: array<f32, 256>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid3: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = p.a; let heads = p.b; let hd = p.c;
  let lid = lid3.x;
  let i = wid.x;
  let head = wid.y;
  let width = heads * hd;
  let qo = i * width + head * hd;
  let scale = bitcast<f32>(p.d);
  for (var d = lid; d < hd; d += 64u) { qs[d] = q[qo + d] * scale; }
  workgroupBarrier();
  var mx = -3.4e38;
  var den = 0.0;
  var acc0 = 0.0;
  var acc1 = 0.0;
  for (var j0 = 0u; j0 < t; j0 += KC) {
    let n = min(KC, t - j0);
    var lmax = -3.4e38;
    for (var jj = lid; jj < n; jj += 64u) {
      let ko = (j0 + jj) * width + head * hd;
      var s = 0.0;
      for (var d = 0u; d < hd; d++) { s = fma(qs[d], k[ko + d], s); }
      sc[jj] = s;
      lmax = max(lmax, s);
    }
    red[lid] = lmax;
    workgroupBarrier();
    for (var st = 32u; st > 0u; st = st >> 1u) {
      if (lid < st) { red[lid] = max(red[lid], red[lid + st]); }
      workgroupBarrier();
    }
    let nm = max(mx, red[0]);
    for (var jj = lid; jj < n; jj += 64u) { sc[jj] = exp(sc[jj] - nm); }
    workgroupBarrier();
    let fix = exp(mx - nm);
    acc0 = acc0 * fix;
    acc1 = acc1 * fix;
    var csum = 0.0;
    for (var jj = 0u; jj < n; jj++) {
      let w = sc[jj];
      csum = csum + w;
      let vo = (j0 + jj) * width + head * hd;
      if (lid < hd) { acc0 = fma(w, v[vo + lid], acc0); }
      if (lid + 64u < hd) { acc1 = fma(w, v[vo + lid + 64u], acc1); }
    }
    den = den * fix + csum;
    mx = nm;
    // Everyone has read sc and red[0] before the next chunk overwrites them.
    workgroupBarrier();
  }
  if (lid < hd) { out[qo + lid] = acc0 / den; }
  if (lid + 64u < hd) { out[qo + lid + 64u] = acc1 / den; }
}
"#;

/// The head of each logit row's distribution, so that a step reads back `k` ids per row
/// instead of the whole vocabulary (see `diffusion::sampling::Ranked`; the CPU reference is
/// `sampling::rank`). One workgroup of 256 per row.
///
/// The row's logits are turned in place into order-preserving u32 keys of the
/// temperature-scaled values (key 0 = excluded: banned, NaN or ±∞; each thread later reads
/// only the words it wrote, so no barrier is needed for that). The `k`-th largest key is
/// found bit by bit from the top (32 counting passes, each a workgroup reduction); the keys
/// above it, then as many ties as fit, are gathered in workgroup memory and ranked there.
/// The log-normaliser comes from one max and one sum pass.
/// p: a = rows, b = vocab, c = k (≤ 256, ≤ vocab), d = 1/temperature bits, e = banned count.
/// out per row: k ids, k scaled logits (f32 bits), the log-normaliser (NaN bits: none allowed).
pub const TOP_K: &str = r#"
@group(0) @binding(1) var<storage, read_write> keys: array<u32>;
@group(0) @binding(2) var<storage, read> banned: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;
var<workgroup> red: array<u32, 256>;
var<workgroup> redf: array<f32, 256>;
var<workgroup> ck: array<u32, 256>;
var<workgroup> ci: array<u32, 256>;
var<workgroup> slots: atomic<u32>;

fn key_of(v: f32) -> u32 {
  let bits = bitcast<u32>(v);
  if ((bits & 0x7f800000u) == 0x7f800000u) { return 0u; }
  if ((bits & 0x80000000u) != 0u) { return ~bits; }
  return bits | 0x80000000u;
}

// The scaled value of a key; key 0 (excluded) reads as -∞.
fn value_bits(key: u32) -> u32 {
  if (key == 0u) { return 0xff800000u; }
  if ((key & 0x80000000u) != 0u) { return key & 0x7fffffffu; }
  return ~key;
}

fn sum_u(v: u32, lid: u32) -> u32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}

fn max_u(v: u32, lid: u32) -> u32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}

fn sum_f(v: f32, lid: u32) -> f32 {
  redf[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { redf[lid] = redf[lid] + redf[lid + s]; }
    workgroupBarrier();
  }
  let t = redf[0];
  workgroupBarrier();
  return t;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let row = wid.x + wid.y * 65535u;
  if (row >= p.a) { return; }
  let vocab = p.b;
  let k = p.c;
  let inv_t = bitcast<f32>(p.d);
  let lid = lid3.x;
  let base = row * vocab;
  var top = 0u;
  for (var i = lid; i < vocab; i += WG) {
    var key = key_of(bitcast<f32>(keys[base + i]) * inv_t);
    for (var b = 0u; b < p.e; b++) {
      if (banned[b] == i) { key = 0u; }
    }
    keys[base + i] = key;
    top = max(top, key);
  }
  let mkey = max_u(top, lid);
  // The log-normaliser over the allowed ids.
  let m = bitcast<f32>(value_bits(mkey));
  var z = 0.0;
  for (var i = lid; i < vocab; i += WG) {
    let key = keys[base + i];
    if (key != 0u) { z = z + exp(bitcast<f32>(value_bits(key)) - m); }
  }
  let zt = sum_f(z, lid);
  // The k-th largest key: the largest t with #{key ≥ t} ≥ k.
  var t = 0u;
  for (var bit = 31i; bit >= 0i; bit--) {
    let c = t | (1u << u32(bit));
    var n = 0u;
    for (var i = lid; i < vocab; i += WG) {
      n = n + select(0u, 1u, keys[base + i] >= c);
    }
    if (sum_u(n, lid) >= k) { t = c; }
  }
  // Everything above t (fewer than k), then ties with t while slots remain.
  if (lid == 0u) { atomicStore(&slots, 0u); }
  workgroupBarrier();
  for (var i = lid; i < vocab; i += WG) {
    let key = keys[base + i];
    if (key > t) {
      let s = atomicAdd(&slots, 1u);
      ck[s] = key;
      ci[s] = i;
    }
  }
  workgroupBarrier();
  for (var i = lid; i < vocab; i += WG) {
    let key = keys[base + i];
    if (key == t) {
      let s = atomicAdd(&slots, 1u);
      if (s < k) { ck[s] = key; ci[s] = i; }
    }
  }
  workgroupBarrier();
  // Rank sort of the k candidates: by key descending, then id ascending.
  let o = row * (2u * k + 1u);
  if (lid < k) {
    let key = ck[lid];
    let id = ci[lid];
    var r = 0u;
    for (var j = 0u; j < k; j++) {
      let kj = ck[j];
      if (kj > key || (kj == key && ci[j] < id)) { r = r + 1u; }
    }
    out[o + r] = id;
    out[o + k + r] = value_bits(key);
  }
  if (lid == 0u) {
    out[o + 2u * k] = select(0x7fc00000u, bitcast<u32>(m + log(zt)), mkey != 0u);
  }
}
"#;

/// `transformers`' repetition penalty in place, before [`TOP_K`]: for each row and each id
/// in `seen`, a finite logit is divided by the penalty when positive, multiplied when not.
/// p: a = rows, b = vocab, c = ids in `seen`, d = penalty bits.
pub const PENALIZE: &str = r#"
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> seen: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.a * p.c) { return; }
  let t = seen[e % p.c];
  if (t >= p.b) { return; }
  let i = (e / p.c) * p.b + t;
  let l = logits[i];
  let pen = bitcast<f32>(p.d);
  if ((bitcast<u32>(l) & 0x7f800000u) != 0x7f800000u) {
    logits[i] = select(l * pen, l / pen, l > 0.0);
  }
}
"#;

/// Embeddings: `out[t, :] = word[ids[t], :] + pos[t + offset, :] + tt[:]`.
/// p: a = t, b = h, c = position offset.
pub const EMBED: &str = r#"
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> word: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<f32>;
@group(0) @binding(4) var<storage, read> tt: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let h = p.b;
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.a * h) { return; }
  let t = e / h;
  let c = e % h;
  out[e] = word[ids[t] * h + c] + pos[(t + p.c) * h + c] + tt[c];
}
"#;

/// Rows of `x` picked by index: `out[i, :] = x[rows[i], :]`; p: a = count, b = h.
pub const GATHER: &str = r#"
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let h = p.b;
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.a * h) { return; }
  out[e] = x[rows[e / h] * h + e % h];
}
"#;

/// `out = a + b` elementwise; p: a = n.
pub const ADD: &str = r#"
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.a) { return; }
  out[e] = a[e] + b[e];
}
"#;

/// A kernel's full source: the shared header, the activations where it applies them, and
/// its body.
pub fn source(body: &str) -> String {
    let acts = if body.contains("act(") { ACTIVATIONS } else { "" };
    format!("{HEADER}{acts}{body}")
}
