// `transformers`' repetition penalty in place, before top_k.wgsl: for each row and each id
// in `seen`, a finite logit is divided by the penalty when positive, multiplied when not.

struct Params { rows: u32, vocab: u32, seen: u32, penalty: f32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> seen: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= p.rows * p.seen) { return; }
  let t = seen[e % p.seen];
  if (t >= p.vocab) { return; }
  let i = (e / p.seen) * p.vocab + t;
  let l = logits[i];
  let pen = p.penalty;
  if ((bitcast<u32>(l) & 0x7f800000u) != 0x7f800000u) {
    logits[i] = select(l * pen, l / pen, l > 0.0);
  }
}
