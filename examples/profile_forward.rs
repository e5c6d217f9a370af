//! Profiling aid: repeated forward passes (all logits) of a model with the chosen matmul, for
//! `perf record`. `cargo run --release --example profile_forward -- MODEL TOKENS REPEATS own|candle`
fn main() -> unmask::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let mut m = unmask::Model::load(std::path::Path::new(&a[1]))?;
    let n: usize = a[2].parse().unwrap();
    let reps: usize = a[3].parse().unwrap();
    m.encoder.kernels.own_gemm = a.get(4).map_or(true, |k| k == "own");
    let ids: Vec<u32> = (0..n as u32).map(|i| 5 + (i * 7919) % 2000).collect();
    let all: Vec<usize> = (0..n).collect();
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        m.logits_at(&ids, &all)?;
    }
    println!("{:.1} ms per forward", t0.elapsed().as_secs_f64() * 1e3 / reps as f64);
    Ok(())
}
