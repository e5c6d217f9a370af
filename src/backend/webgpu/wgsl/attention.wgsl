// Self-attention without masking (every sequence is full length): one workgroup of 64 per
// (query, head). Keys go in chunks of 256: the threads score a chunk into shared memory (one
// key each, q pre-scaled in shared memory), reduce its maximum, turn scores into weights, and
// then each thread accumulates one or two of the head's dimensions over the chunk's values
// (reads of v rows are coalesced), with an online-softmax rescale between chunks, so any
// sequence length fits. The first version gave each (query, head) to a single invocation
// (48 workgroups for 256 tokens × 12 heads, and its 128-float accumulator in memory): most of
// a forward's time on the H100. q, out: [queries × heads·hd] (queries = the dispatch's x);
// k, v: [keys × heads·hd]; head_dim ≤ 128; scale = 1/√head_dim.

struct Params { keys: u32, heads: u32, head_dim: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;

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
  let t = p.keys; let heads = p.heads; let hd = p.head_dim;
  let lid = lid3.x;
  let i = wid.x;
  let head = wid.y;
  let width = heads * hd;
  let qo = i * width + head * hd;
  let scale = p.scale;
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
