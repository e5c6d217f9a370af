// Rows of `x` picked by index: `out[i, :] = x[rows[i], :]`, `rows` rows of `width`.

struct Params { rows: u32, width: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let h = p.width;
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.rows * h) { return; }
  out[e] = x[rows[e / h] * h + e % h];
}
