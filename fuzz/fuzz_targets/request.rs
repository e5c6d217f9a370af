//! Generation and training requests as the JS API passes them (JSON objects): parse, check,
//! and run a generation that passes the checks for two steps on the fixture model.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unmask::diffusion::request::{GenerateRequest, TrainRequest};
use unmask::diffusion::TrainOptions;
use unmask::options::OptionSet;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let m = common::fixture();
    if let Ok(req) = serde_json::from_slice::<GenerateRequest>(data) {
        if let Ok(mut session) = req.into_session(m) {
            for _ in 0..2 {
                match session.step(m) {
                    Ok(Some(step)) => assert!(step.ids.len() <= m.config().max_sequence_len()),
                    _ => break,
                }
            }
        }
    }
    if let Ok(req) = serde_json::from_slice::<TrainRequest>(data) {
        // Big batches or vocabularies are valid but slow: they would only time the fuzzer out.
        let small = |o: &TrainOptions| o.batch_size.saturating_mul(o.seq_len).saturating_mul(o.accumulate) <= 1024 && o.vocab <= 2048;
        if TrainOptions::from_value(req.options.clone(), "training options").is_ok_and(|o| small(&o)) {
            if let Ok(mut t) = req.into_trainer(m, "A tiny corpus.\n\nOf two documents, each a line.") {
                let _ = t.step();
            }
        }
    }
});
