//! A GGUF model file from anywhere (download, drag and drop): load it, and if it loads, run
//! the encoder once so that a file that parses but lies about its shapes is caught too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = unmask::Model::from_gguf_bytes(data) {
        let max = model.config().max_sequence_len().min(8);
        let ids: Vec<u32> = (0..max as u32).map(|i| i % model.config().vocab_size as u32).collect();
        let _ = model.logits_at(&ids, &[0]);
    }
});
