//! Text ↔ token ids, with the special tokens diffusion needs (mask, start, end).

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// A Hugging Face tokenizer plus the ids of the special tokens we place ourselves.
#[derive(Clone)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    json: String,
    pub mask_id: u32,
    pub bos_id: u32,
    pub eos_id: u32,
    pub pad_id: Option<u32>,
    pub unk_id: Option<u32>,
    /// Largest id the tokenizer can emit, plus one.
    pub vocab_size: usize,
    mask_text: String,
}

fn find(tok: &Tokenizer, candidates: &[&str]) -> Option<(u32, String)> {
    candidates.iter().find_map(|c| tok.token_to_id(c).map(|id| (id, c.to_string())))
}

/// Rejects what makes `tokenizers` 0.23 panic instead of returning an error (found by
/// `fuzz/fuzz_targets/tokenizer.rs`): JSON syntax errors inside a `decoder` (its loader
/// `expect`s), and `Precompiled` normalizers with malformed data (SentencePiece models, which
/// no BERT/RoBERTa checkpoint uses).
/// Returns the parsed JSON, which the tokenizer is then built from (one parse per load).
fn precheck(json: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not valid JSON: {e}")))?;
    fn has_precompiled(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                m.get("type").and_then(|t| t.as_str()) == Some("Precompiled") || m.values().any(has_precompiled)
            }
            serde_json::Value::Array(a) => a.iter().any(has_precompiled),
            _ => false,
        }
    }
    if v.get("normalizer").is_some_and(has_precompiled) {
        return Err(Error::Tokenizer(
            "tokenizer.json uses a Precompiled (SentencePiece) normalizer, which is not supported".into(),
        ));
    }
    Ok(v)
}

impl TextCodec {
    pub fn from_json(json: &str) -> Result<Self> {
        let value = precheck(json)?;
        // `tokenizers` still has `expect`s in its loaders: natively a panic is caught here; in
        // wasm (where panics abort) `precheck` must have ruled out every input known to reach one.
        let loaded = std::panic::catch_unwind(|| serde_json::from_value::<Tokenizer>(value))
            .map_err(|_| Error::Tokenizer("tokenizer.json could not be loaded (the tokenizers library failed on it)".into()))?;
        let mut tokenizer =
            loaded.map_err(|e| Error::Tokenizer(format!("tokenizer.json is not a valid tokenizer: {e}")))?;
        // Checkpoints often ship `tokenizer.json` with truncation and fixed-length padding for
        // their original task (sentence-transformers: 128). We place every token ourselves:
        // a prompt must be neither cut nor padded.
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("cannot disable truncation: {e}")))?;
        tokenizer.with_padding(None);
        let (mask_id, mask_text) = find(&tokenizer, &["<mask>", "[MASK]"])
            .ok_or_else(|| Error::Tokenizer("the tokenizer has no mask token (<mask> or [MASK])".into()))?;
        let (bos_id, _) = find(&tokenizer, &["<s>", "[CLS]"])
            .ok_or_else(|| Error::Tokenizer("the tokenizer has no start token (<s> or [CLS])".into()))?;
        let (eos_id, _) = find(&tokenizer, &["</s>", "[SEP]"])
            .ok_or_else(|| Error::Tokenizer("the tokenizer has no end token (</s> or [SEP])".into()))?;
        let pad_id = find(&tokenizer, &["<pad>", "[PAD]"]).map(|x| x.0);
        let unk_id = find(&tokenizer, &["<unk>", "[UNK]"]).map(|x| x.0);
        let vocab_size = tokenizer.get_vocab(true).values().copied().max().map_or(0, |m| m as usize + 1);
        Ok(Self { tokenizer, json: json.to_string(), mask_id, bos_id, eos_id, pad_id, unk_id, vocab_size, mask_text })
    }

    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of plain text, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of ids, special tokens dropped. WordPiece text gets the spacing clean-up that
    /// `transformers` applies after decoding (`clean_up_tokenization_spaces`): BERT splits
    /// "don't" into `don ' t`, and its decoder cleans up token by token, which cannot see
    /// the `' ` between two tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        let text = self.tokenizer.decode(ids, true).unwrap_or_default();
        if self.is_wordpiece() { clean_up_spaces(&text) } else { text }
    }

    /// The surface text of one token as it would appear inside a sentence (byte-level BPE's
    /// `Ġ` becomes a space, WordPiece's `##` joins). Used to draw a canvas cell by cell.
    pub fn piece(&self, id: u32) -> String {
        if id == self.mask_id {
            return self.mask_text.clone();
        }
        let raw = self.tokenizer.id_to_token(id).unwrap_or_default();
        if let Some(rest) = raw.strip_prefix("##") {
            return rest.to_string();
        }
        if self.is_special(id) {
            return raw;
        }
        // Decoding with a leading space-free neighbour recovers the piece's own spacing for
        // byte-level BPE; WordPiece pieces get the space a decoder would put before them.
        match self.tokenizer.decode(&[id], false) {
            Ok(s) if raw.starts_with('Ġ') || raw.starts_with('▁') => {
                if s.starts_with(' ') { s } else { format!(" {s}") }
            }
            Ok(s) if self.is_wordpiece() => format!(" {s}"),
            Ok(s) => s,
            Err(_) => raw,
        }
    }

    fn is_wordpiece(&self) -> bool {
        self.bos_id == self.tokenizer.token_to_id("[CLS]").unwrap_or(u32::MAX)
    }

    pub fn is_special(&self, id: u32) -> bool {
        id == self.mask_id || id == self.bos_id || id == self.eos_id || Some(id) == self.pad_id || Some(id) == self.unk_id
    }

    /// Ids generation must never produce.
    pub fn banned_ids(&self) -> Vec<u32> {
        let mut v = vec![self.mask_id, self.bos_id, self.eos_id];
        v.extend(self.pad_id);
        v.extend(self.unk_id);
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Renders a canvas for people: special tokens dropped, masks drawn as `mask`.
    pub fn render(&self, ids: &[u32], mask: &str) -> String {
        let mut out = String::new();
        let mut run: Vec<u32> = Vec::new();
        let wordpiece = self.is_wordpiece();
        for &id in ids {
            if id == self.mask_id {
                if !run.is_empty() {
                    out.push_str(&self.decode(&run));
                    run.clear();
                }
                if wordpiece || !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(mask);
            } else if !self.is_special(id) {
                if run.is_empty() && !out.is_empty() && wordpiece {
                    let piece = self.tokenizer.id_to_token(id).unwrap_or_default();
                    if !piece.starts_with("##") {
                        out.push(' ');
                    }
                }
                run.push(id);
            }
        }
        if !run.is_empty() {
            out.push_str(&self.decode(&run));
        }
        out.trim_start().to_string()
    }
}

/// `transformers`' `clean_up_tokenization` (no space before punctuation and English
/// contractions), then what WordPiece's spacing loses and people write tight: hyphenated
/// words (`third - largest` → `third-largest`), dashes (`so - - and` → `so--and`, as the
/// Gutenberg texts write them), the inside of brackets (`( 2, 000 sq mi )` → `(2,000 sq mi)`)
/// and of double quotes (`" yes, " he said` → `"yes," he said`), digit groups (`2, 000` →
/// `2,000`), and no space before `;` or `:`.
fn clean_up_spaces(text: &str) -> String {
    const RULES: [(&str, &str); 15] = [
        (" - - ", "--"),
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ;", ";"),
        (" :", ":"),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
        ("( ", "("),
        (" )", ")"),
    ];
    let text = RULES.iter().fold(text.to_string(), |t, (from, to)| t.replace(from, to));
    quote(&tighten(&text))
}

/// Attaches each standalone `"` to the text it quotes: odd ones (opening) to the word after,
/// even ones (closing) to the word before. WordPiece keeps no side, so the count decides, as
/// in Moses' detokenizer; a sample with an unpaired quote may pair the rest the wrong way.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // `glue`: no space before this word (the first, or the one after an opening quote).
    let (mut open, mut glue) = (false, true);
    for w in text.split(' ') {
        let is_quote = w == "\"";
        if !glue && !(is_quote && open) {
            out.push(' ');
        }
        out.push_str(w);
        glue = is_quote && !open;
        if is_quote {
            open = !open;
        }
    }
    out
}

/// Drops the spaces around a hyphen between two letters or digits, and the space after a
/// comma between digits when exactly three digits follow (a thousands group).
fn tighten(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let prev = out.chars().last().is_some_and(char::is_alphanumeric);
        if prev && c[i..].starts_with(&[' ', '-', ' ']) && c.get(i + 3).is_some_and(|ch| ch.is_alphanumeric()) {
            out.push('-');
            i += 3;
            continue;
        }
        let digit_before = out.chars().last().is_some_and(|ch| ch.is_ascii_digit());
        let group = c.get(i + 2..i + 5).is_some_and(|g| g.iter().all(char::is_ascii_digit)) && !c.get(i + 5).is_some_and(|ch| ch.is_ascii_digit());
        if digit_before && c[i..].starts_with(&[',', ' ']) && group {
            out.push(',');
            i += 2;
            continue;
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordpiece_text_reads_like_transformers_decodes_it() {
        // The fixture's tokenizer with a vocabulary that has every word of the sentence.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bert/tokenizer.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let words = "[PAD] [UNK] [CLS] [SEP] [MASK] it ' s the cat toy , isn t ? you d say so .";
        let vocab: serde_json::Map<String, serde_json::Value> =
            words.split(' ').enumerate().map(|(i, w)| (w.to_string(), serde_json::json!(i))).collect();
        v["model"]["vocab"] = serde_json::Value::Object(vocab);
        let codec = TextCodec::from_json(&v.to_string()).unwrap();
        let ids = codec.encode("it's the cat's toy, isn't it? you'd say so.").unwrap();
        assert!(!ids.contains(&codec.unk_id.unwrap()));
        assert_eq!(codec.decode(&ids), "it's the cat's toy, isn't it? you'd say so.");
        // Byte-level BPE decodes exactly: no clean-up there.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/roberta/tokenizer.json");
        let codec = TextCodec::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
        let text = "It ' s spaced ' oddly ' .";
        assert_eq!(codec.decode(&codec.encode(text).unwrap()), text);
    }

    #[test]
    fn wordpiece_spacing_of_hyphens_dashes_brackets_quotes_and_digit_groups_is_tightened() {
        let cases = [
            ("the third - largest city", "the third-largest city"),
            ("to - morrow , at 3 - 4 pm", "to-morrow, at 3-4 pm"),
            ("an area ( 2 , 000 sq mi ) ; that is : large", "an area (2,000 sq mi); that is: large"),
            ("1 , 234 , 567 people", "1,234,567 people"),
            // Not thousands groups, not compounds: left as they are.
            ("in 1990 , 12 of them", "in 1990, 12 of them"),
            ("3 , 1415", "3, 1415"),
            ("a - ", "a - "),
            ("yes ; - - no", "yes;--no"),
            ("\" i saw him, \" she said. \" yes! \" \"", "\"i saw him,\" she said. \"yes!\" \""),
            ("he said \" no \"", "he said \"no\""),
        ];
        for (wordpiece, written) in cases {
            assert_eq!(clean_up_spaces(wordpiece), written, "{wordpiece}");
        }
    }

    #[test]
    fn truncation_and_padding_in_tokenizer_json_are_ignored() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bert/tokenizer.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        v["truncation"] = serde_json::json!({"max_length": 3, "strategy": "LongestFirst", "stride": 0, "direction": "Right"});
        v["padding"] = serde_json::json!({"strategy": {"Fixed": 32}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"});
        let codec = TextCodec::from_json(&v.to_string()).unwrap();
        let ids = codec.encode("The cat sat on the mat and the dog lay by the door.").unwrap();
        assert!(ids.len() > 3 && ids.len() < 32, "{} ids", ids.len());
        assert!(!ids.contains(&codec.pad_id.unwrap()));
    }
}
