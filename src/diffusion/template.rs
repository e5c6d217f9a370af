//! Infill templates: text with mask spans, e.g. `The [MASK:3] sat on the [MASK].`
//!
//! Spans: `[MASK]` (one token), `[MASK:n]` or `[MASK]×n` / `[MASK]*n` (n tokens). `<mask>` is
//! accepted as a synonym of `[MASK]`.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Masks(usize),
}

/// At most this many masks in one span: a typo like `[MASK:1000000]` must not allocate.
pub const MAX_SPAN: usize = 4096;

fn count_digits(s: &str) -> usize {
    s.bytes().take_while(|b| b.is_ascii_digit()).count()
}

fn parse_count(digits: &str) -> Result<usize> {
    let n: usize = digits.parse().map_err(|_| Error::input(format!("mask count `{digits}` is not a number")))?;
    if n == 0 || n > MAX_SPAN {
        return Err(Error::input(format!("mask count must be between 1 and {MAX_SPAN}, got {n}")));
    }
    Ok(n)
}

pub fn parse(template: &str) -> Result<Vec<Segment>> {
    let mut out: Vec<Segment> = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        let (tag_len, mut count) = if rest.starts_with("[MASK]") {
            (6, 1)
        } else if rest.starts_with("<mask>") {
            (6, 1)
        } else if let Some(after) = rest.strip_prefix("[MASK:") {
            let d = count_digits(after);
            if d == 0 || !after[d..].starts_with(']') {
                return Err(Error::input("malformed span: use [MASK:n] with a number n"));
            }
            (6 + d + 1, parse_count(&after[..d])?)
        } else {
            let ch = rest.chars().next().unwrap();
            text.push(ch);
            rest = &rest[ch.len_utf8()..];
            continue;
        };
        rest = &rest[tag_len..];
        // Optional repetition suffix: ×n or *n.
        for sym in ["×", "*"] {
            if let Some(after) = rest.strip_prefix(sym) {
                let d = count_digits(after);
                if d > 0 {
                    count = parse_count(&after[..d])?;
                    rest = &after[d..];
                }
                break;
            }
        }
        if !text.is_empty() {
            out.push(Segment::Text(std::mem::take(&mut text)));
        }
        match out.last_mut() {
            Some(Segment::Masks(n)) => *n = (*n + count).min(MAX_SPAN * 4),
            _ => out.push(Segment::Masks(count)),
        }
    }
    if !text.is_empty() {
        out.push(Segment::Text(text));
    }
    if !out.iter().any(|s| matches!(s, Segment::Masks(_))) {
        return Err(Error::input("the template has no [MASK] span to fill"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Segment::*;

    #[test]
    fn spans_and_text() {
        assert_eq!(
            parse("The [MASK]×5 sat on the [MASK].").unwrap(),
            vec![Text("The ".into()), Masks(5), Text(" sat on the ".into()), Masks(1), Text(".".into())]
        );
        assert_eq!(parse("[MASK:3]<mask>x").unwrap(), vec![Masks(4), Text("x".into())]);
        assert_eq!(parse("a [MASK]*2").unwrap(), vec![Text("a ".into()), Masks(2)]);
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(parse("no spans here").is_err());
        assert!(parse("[MASK:0]").is_err());
        assert!(parse("[MASK:99999999999999999999999]").is_err());
        assert!(parse("[MASK:abc]").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn unicode_text_survives() {
        assert_eq!(parse("é[MASK]ü").unwrap(), vec![Text("é".into()), Masks(1), Text("ü".into())]);
    }
}
