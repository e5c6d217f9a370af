//! Results do not depend on the thread count: our kernels (the wasm path's GEMM, integer
//! kernel and attention, run natively here) split their outputs across rayon's pool, and the
//! same seed must give the same logits, bit for bit, and the same tokens with 1, 2 or 4
//! threads.

use unmask::backend::Kernels;
use unmask::diffusion::{generate, Canvas, SampleOptions};
use unmask::Model;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

#[test]
fn the_shipped_model_gives_the_same_logits_and_tokens_with_1_2_and_4_threads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.gguf");
    let mut model = Model::load(&path).unwrap();
    for kernels in [Kernels { own_gemm: true, int8: true }, Kernels { own_gemm: true, int8: false }] {
        model.encoder.kernels = kernels;
        // A 256-token sequence (several row tasks per product) with every third position masked.
        let text = "the old house stood at the end of the lane, and nobody had lived in it for many years. ".repeat(12);
        let mut ids = model.codec.encode(&text).unwrap();
        ids.truncate(256);
        let positions: Vec<usize> = (1..ids.len() - 1).step_by(3).collect();
        for &p in &positions {
            ids[p] = model.codec.mask_id;
        }
        let start = Canvas::from_template(&model.codec, "It was a dark and stormy night,[MASK:24]", 64).unwrap();
        let opts = SampleOptions { seed: 7, steps: 12, ..Default::default() };
        let run = |threads: usize| {
            pool(threads).install(|| {
                assert_eq!(unmask::backend::par::threads(), threads);
                let logits = model.logits_at(&ids, &positions).unwrap();
                let out = generate(&model, start.clone(), &model.codec.banned_ids(), &opts, |_| true).unwrap();
                (logits, out.canvas.ids)
            })
        };
        let (one, tokens) = run(1);
        for threads in [2, 4] {
            let (l, t) = run(threads);
            assert!(one.iter().zip(&l).all(|(a, b)| a.to_bits() == b.to_bits()), "{kernels:?}: logits differ with {threads} threads");
            assert_eq!(t, tokens, "{kernels:?}: tokens differ with {threads} threads");
        }
    }
}
