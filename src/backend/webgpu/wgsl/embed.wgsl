// Embeddings: `out[t, :] = word[ids[t], :] + pos[t + offset, :] + tt[:]`.

struct Params { tokens: u32, width: u32, position_offset: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> word: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<f32>;
@group(0) @binding(4) var<storage, read> tt: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let h = p.width;
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.tokens * h) { return; }
  let t = e / h;
  let c = e % h;
  out[e] = word[ids[t] * h + c] + pos[(t + p.position_offset) * h + c] + tt[c];
}
