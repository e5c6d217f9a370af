//! Infill templates as users type them (`The [MASK:3] sat on the [MASK].`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = std::str::from_utf8(data) else { return };
    let _ = unmask::diffusion::template::parse(t);
    let m = common::fixture();
    if let Ok(c) = unmask::diffusion::Canvas::from_template(&m.codec, t, m.config().max_sequence_len()) {
        assert_eq!(c.ids.len(), c.fixed.len());
        assert!(c.ids.len() <= m.config().max_sequence_len());
    }
});
