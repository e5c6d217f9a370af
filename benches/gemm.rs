//! `cargo bench --bench gemm`: our GEMM (the kernel wasm uses, here on its portable lanes)
//! against candle's matmul, one thread, at the default model's shapes. Prints GFLOP/s.
use std::time::Instant;

use candle_core::{Device, Tensor};
use unmask::backend::gemm::matmul_t;
use unmask::backend::par::Out;

fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        f();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    // (m, k, n): attention projections, FFN in/out, the MLM head over 141 masked rows.
    let shapes = [(256, 384, 384), (256, 384, 1536), (256, 1536, 384), (141, 384, 30522), (256, 512, 2048)];
    println!("{:>18} {:>12} {:>12} {:>7}", "m × k × n", "own GFLOP/s", "candle", "ratio");
    for (m, k, n) in shapes {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut out = vec![0f32; m * n];
        let own = time(|| matmul_t(&x, &w, None, m, k, n, &Out::new(&mut out)));
        let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
        let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
        let candle = time(|| {
            xt.matmul(&wt.t().unwrap()).unwrap();
        });
        let gflop = 2.0 * (m * k * n) as f64 / 1e9;
        println!("{:>18} {:>12.1} {:>12.1} {:>7.2}", format!("{m}×{k}×{n}"), gflop / own, gflop / candle, candle / own);
    }
}
