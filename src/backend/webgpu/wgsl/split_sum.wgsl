// The end of a split-K matmul: `out[e] = act(Σ_z part[z][e] + bias[e % n])`. `len` = m·n; bias and
// activation as in matmul.wgsl.

struct Params { len: u32, n: u32, splits: u32, has_bias: u32, act: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.len) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s = s + part[z * p.len + e]; }
  if (p.has_bias != 0u) { s = s + bias[e % p.n]; }
  out[e] = act(s, p.act);
}
