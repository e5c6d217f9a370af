// Shared by the targets: the fixture model the request and template targets run against.
#![allow(dead_code)]

use std::sync::OnceLock;

use unmask::Model;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/roberta-prelayernorm");

pub fn fixture() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::load(std::path::Path::new(DIR)).expect("fixture model loads"))
}

/// Splits `data` into `n` parts, each prefixed by a little-endian u32 length (the last part
/// takes the rest), so one fuzz input can carry several files.
pub fn split(mut data: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n - 1 {
        let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        data = &data[4..];
        let len = len.min(data.len());
        parts.push(&data[..len]);
        data = &data[len..];
    }
    parts.push(data);
    Some(parts)
}
