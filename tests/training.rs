//! The diffusion objective and trainer.

mod common;

use common::{fixture, FAMILIES};
use unmask::diffusion::corpus::split_documents;
use unmask::diffusion::objective::{loss_terms, mask_batch, MaskSchedule};
use unmask::diffusion::rng::Rng;
use unmask::diffusion::{TrainOptions, Trainer};
use unmask::model::bpe::train_bpe;
use unmask::Model;

fn sample_docs() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/sample-corpus.txt")).unwrap();
    split_documents(&text)
}

fn small_opts() -> TrainOptions {
    TrainOptions { seq_len: 32, batch_size: 8, eval_sequences: 4, max_prefix: 8, ..Default::default() }
}

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient_in_every_family() {
    for family in FAMILIES {
        let model = Model::load(&fixture(family)).unwrap();
        let mut t = Trainer::new(&model, &sample_docs(), small_opts()).unwrap();
        let norms = t.gradient_norms().unwrap();
        assert!(norms.len() > 20);
        for (name, n) in norms {
            // The token-type table has one used row; BERT's second row never sees a gradient.
            assert!(n.is_finite() && n > 0.0, "{family}: `{name}` gradient norm {n}");
        }
    }
}
