// Per row of `width`: `s = x + r` (with `add_residual`), `y = (s − mean) / sqrt(var + eps) ·
// g + b`; `s` written back with `keep_sum` (pre-LN keeps the residual stream). One workgroup
// of 64 threads per row.

struct Params { rows: u32, width: u32, eps: f32, add_residual: u32, keep_sum: u32 }
@group(0) @binding(0) var<uniform> p: Params;

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
  if (row >= p.rows) { return; }
  let h = p.width;
  let lid = lid3.x;
  let base = row * h;
  let add = p.add_residual != 0u;
  let keep = p.keep_sum != 0u;
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
  let inv = inverseSqrt(total(sq, lid) / f32(h) + p.eps);
  for (var i = lid; i < h; i += 64u) {
    var v = x[base + i];
    if (add) { v = v + r[base + i]; }
    y[base + i] = (v - mean) * inv * g[i] + bb[i];
  }
}
