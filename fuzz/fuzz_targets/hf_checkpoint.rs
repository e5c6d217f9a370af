//! A Hugging Face checkpoint: `config.json`, `model.safetensors` and `tokenizer.json`, as three
//! length-prefixed parts of one input.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(p) = common::split(data, 3) else { return };
    if let Ok(model) = unmask::Model::from_hf_bytes("fuzz", p[0], p[1], p[2]) {
        let n = model.config().max_sequence_len().min(6);
        let ids: Vec<u32> = (0..n as u32).map(|i| i % model.config().vocab_size as u32).collect();
        let _ = model.logits_at(&ids, &[n - 1]);
    }
});
