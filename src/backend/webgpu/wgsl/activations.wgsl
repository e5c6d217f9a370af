// Activations shared by the matmul epilogue and the split-K sum. `kind`: 0 none, 1 exact
// GELU, 2 tanh GELU, 3 ReLU. Prepended to the kernels that call `act`.

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
