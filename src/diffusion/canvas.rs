//! The sequence being denoised: token ids plus which positions are fixed.

use super::template::{self, Segment};
use crate::error::{Error, Result};
use crate::model::TextCodec;

#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    pub ids: Vec<u32>,
    /// Fixed positions (start/end tokens, prompt, pinned words) are never changed.
    pub fixed: Vec<bool>,
    pub mask_id: u32,
}

fn check_len(total: usize, max_len: usize) -> Result<()> {
    if total > max_len {
        return Err(Error::input(format!(
            "the canvas needs {total} tokens (special tokens included) but the model's context is {max_len}"
        )));
    }
    Ok(())
}

impl Canvas {
    pub fn new(ids: Vec<u32>, fixed: Vec<bool>, mask_id: u32) -> Result<Self> {
        if ids.len() != fixed.len() {
            return Err(Error::input("ids and fixed flags differ in length"));
        }
        Ok(Self { ids, fixed, mask_id })
    }

    /// `<s> prompt <mask>×length </s>`: the classic continuation setting.
    pub fn from_prompt(codec: &TextCodec, prompt: &str, length: usize, max_len: usize) -> Result<Self> {
        if prompt.trim().is_empty() {
            return Err(Error::input("the prompt is empty (use a template such as `[MASK:32]` to generate from nothing)"));
        }
        if length == 0 {
            return Err(Error::options("length must be at least 1"));
        }
        let p = codec.encode(prompt.trim_end())?;
        check_len(p.len().saturating_add(length).saturating_add(2), max_len)?;
        let mut ids = vec![codec.bos_id];
        ids.extend(&p);
        ids.extend(std::iter::repeat(codec.mask_id).take(length));
        ids.push(codec.eos_id);
        let mut fixed = vec![true; ids.len()];
        for f in &mut fixed[1 + p.len()..1 + p.len() + length] {
            *f = false;
        }
        Self::new(ids, fixed, codec.mask_id)
    }

    /// A template with mask spans anywhere (`The [MASK:3] sat on the [MASK].`).
    pub fn from_template(codec: &TextCodec, template: &str, max_len: usize) -> Result<Self> {
        let segs = template::parse(template)?;
        let mut ids = vec![codec.bos_id];
        let mut fixed = vec![true];
        for (i, seg) in segs.iter().enumerate() {
            match seg {
                Segment::Text(t) => {
                    // A byte-level BPE would turn a space before a span into a token of its
                    // own; the masked word brings its own leading space instead.
                    let before_mask = matches!(segs.get(i + 1), Some(Segment::Masks(_)));
                    let t = if before_mask { t.trim_end() } else { t.as_str() };
                    let enc = codec.encode(t)?;
                    fixed.extend(std::iter::repeat(true).take(enc.len()));
                    ids.extend(enc);
                }
                Segment::Masks(n) => {
                    check_len(ids.len() + n + 1, max_len)?;
                    ids.extend(std::iter::repeat(codec.mask_id).take(*n));
                    fixed.extend(std::iter::repeat(false).take(*n));
                }
            }
            check_len(ids.len() + 1, max_len)?;
        }
        ids.push(codec.eos_id);
        fixed.push(true);
        Self::new(ids, fixed, codec.mask_id)
    }

    /// Pins `tokens` at canvas positions `at..`, which must currently be masked.
    pub fn pin(&mut self, at: usize, tokens: &[u32]) -> Result<()> {
        let end = at.checked_add(tokens.len()).filter(|&e| e <= self.ids.len());
        let Some(end) = end else {
            return Err(Error::input(format!("pinned tokens at {at} run past the canvas end ({})", self.ids.len())));
        };
        for p in at..end {
            if self.fixed[p] {
                return Err(Error::input(format!("position {p} is already fixed; cannot pin there")));
            }
        }
        for (p, &t) in (at..end).zip(tokens) {
            self.ids[p] = t;
            self.fixed[p] = true;
        }
        Ok(())
    }

    /// Positions still masked, left to right.
    pub fn masked(&self) -> Vec<usize> {
        (0..self.ids.len()).filter(|&i| !self.fixed[i] && self.ids[i] == self.mask_id).collect()
    }

    /// Re-masks positions (for editing in place); fixed positions are refused.
    pub fn remask(&mut self, positions: &[usize]) -> Result<()> {
        for &p in positions {
            if p >= self.ids.len() || self.fixed[p] {
                return Err(Error::input(format!("position {p} cannot be re-masked")));
            }
        }
        for &p in positions {
            self.ids[p] = self.mask_id;
        }
        Ok(())
    }
}
