// `out = a + b` elementwise, `len` elements.

struct Params { len: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.len) { return; }
  out[e] = a[e] + b[e];
}
