//! Peak throughput of the two instructions our kernels are built on, as V8 runs them: enough
//! independent accumulator chains to cover each instruction's latency, no loads or stores.
//! Exported without wasm-bindgen (plain `extern "C"`), instantiated by bench/page.js.
use core::arch::wasm32::*;

/// `n` rounds of 12 independent `f32x4.relaxed_madd` chains (4 lanes × 2 FLOP each).
#[no_mangle]
pub extern "C" fn fma_rounds(n: u32, seed: f32) -> f32 {
    let (b, c) = (f32x4_splat(0.999), f32x4_splat(seed));
    let mut a = [f32x4_splat(1.0); 12];
    for _ in 0..n {
        for x in a.iter_mut() {
            *x = f32x4_relaxed_madd(*x, b, c);
        }
        core::hint::black_box(&b); // one round per iteration, nothing hoisted
    }
    let s = a.iter().fold(f32x4_splat(0.0), |s, x| f32x4_add(s, *x));
    f32x4_extract_lane::<0>(s)
}

/// `n` rounds of 12 independent `i32x4.relaxed_dot_i8x16_i7x16_add` chains (16 multiply-adds
/// each). 12 chains: with 8, V8's lowering (one VNNI instruction on this CPU) is latency-bound
/// at ~70 % of this figure.
#[no_mangle]
pub extern "C" fn dot_rounds(n: u32, seed: i32) -> i32 {
    let (x, w) = (i8x16_splat(seed as i8), i8x16_splat(3));
    let mut a = [i32x4_splat(0); 12];
    for _ in 0..n {
        for acc in a.iter_mut() {
            *acc = i32x4_relaxed_dot_i8x16_i7x16_add(x, w, *acc);
        }
        core::hint::black_box(&x);
    }
    let s = a.iter().fold(i32x4_splat(0), |s, v| i32x4_add(s, *v));
    i32x4_extract_lane::<0>(s)
}
