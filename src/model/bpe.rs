//! Training a byte-level BPE tokenizer (RoBERTa's special tokens) on a corpus, with the
//! `tokenizers` trainer, so a model trained from scratch fits its text.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::text::TextCodec;
use crate::error::{Error, Result};

/// RoBERTa's special tokens, in its id order.
pub const SPECIALS: [&str; 5] = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

pub fn train_bpe(docs: &[String], vocab_size: usize) -> Result<TextCodec> {
    if !(300..=65536).contains(&vocab_size) {
        return Err(Error::options(format!("vocabulary size must be in [300, 65536], got {vocab_size}")));
    }
    if docs.iter().all(|d| d.trim().is_empty()) {
        return Err(Error::Training("the corpus is empty".into()));
    }
    let specials = SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.with_post_processor(Some(RobertaProcessing::new(("</s>".into(), 2), ("<s>".into(), 0))));
    tok.train(&mut trainer, docs.iter())
        .map_err(|e| Error::Tokenizer(format!("tokenizer training failed: {e}")))?;
    let json = tok.to_string(false).map_err(|e| Error::Tokenizer(e.to_string()))?;
    TextCodec::from_json(&json)
}
