// Scratch probe: does a tiny model learn a context-only task?
use unmask::diffusion::{TrainOptions, Trainer};
use unmask::model::bpe::train_bpe;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let lr: f64 = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(1e-3);
    let text = std::fs::read_to_string("www/sample-corpus.txt").unwrap();
    let docs = unmask::diffusion::corpus::split_documents(&text);
    let codec = train_bpe(&docs, 512).unwrap();
    let opts = TrainOptions { seq_len: 64, batch_size: 16, lr, warmup: 20, total_steps: 400, max_prefix: 16, ..Default::default() };
    let mut t = Trainer::from_scratch("tiny", codec, &docs, opts).unwrap();
    let t0 = std::time::Instant::now();
    for i in 0..400 {
        let r = t.step().unwrap();
        if i % 25 == 0 { println!("{i} loss {:.3} gn {:.4} lr {:.1e} {:.1}s", r.loss, r.grad_norm, r.lr, t0.elapsed().as_secs_f64()); }
    }
}
