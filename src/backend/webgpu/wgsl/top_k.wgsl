// The head of each logit row's distribution, so that a step reads back `k` ids per row
// instead of the whole vocabulary (see `backend::rank::Ranked`; the CPU reference is
// `rank::rank`). One workgroup of 256 per row.
//
// The row's logits are turned in place into order-preserving u32 keys of the
// temperature-scaled values (key 0 = excluded: banned, NaN or ±∞; each thread later reads
// only the words it wrote, so no barrier is needed for that). The `k`-th largest key is
// found bit by bit from the top (32 counting passes, each a workgroup reduction); the keys
// above it, then as many ties as fit, are gathered in workgroup memory and ranked there.
// The log-normaliser comes from one max and one sum pass.
// k ≤ 256 and ≤ vocab; `banned` ids in the banned buffer.
// out per row: k ids, k scaled logits (f32 bits), the log-normaliser (NaN bits: none allowed).

struct Params { rows: u32, vocab: u32, k: u32, inv_temperature: f32, banned: u32 }
@group(0) @binding(0) var<uniform> p: Params;

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
  if (row >= p.rows) { return; }
  let vocab = p.vocab;
  let k = p.k;
  let inv_t = p.inv_temperature;
  let lid = lid3.x;
  let base = row * vocab;
  var top = 0u;
  for (var i = lid; i < vocab; i += WG) {
    var key = key_of(bitcast<f32>(keys[base + i]) * inv_t);
    for (var b = 0u; b < p.banned; b++) {
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
