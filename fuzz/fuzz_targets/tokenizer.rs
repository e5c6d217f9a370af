//! A `tokenizer.json`: load it, then encode, decode and render with it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else { return };
    if let Ok(codec) = unmask::model::TextCodec::from_json(json) {
        if let Ok(ids) = codec.encode("The cat sat on the <mask> mat. Ünïcödé 🐈") {
            let _ = codec.decode(&ids);
            let _ = codec.render(&ids, "_");
            for &i in &ids {
                let _ = codec.piece(i);
            }
        }
        let _ = codec.banned_ids();
        let _ = codec.render(&[0, 1, 2, 3, u32::MAX], "_");
    }
});
