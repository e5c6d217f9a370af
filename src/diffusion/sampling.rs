//! Turning one position's logits into a token: temperature, top-k, top-p, confidence.

use crate::rng::Rng;
use crate::backend::simd;
pub use crate::backend::rank::{penalized, rank, Ranked, Scoring};

/// The outcome of sampling one position.
#[derive(Debug, Clone)]
pub struct Pick {
    pub token: u32,
    /// Probability of `token` under the temperature-scaled distribution before truncation.
    pub confidence: f32,
    /// How sure the position is, whatever was drawn: the probability of its most likely token
    /// less the second's (the `margin` strategy's order).
    pub margin: f32,
    /// Negative entropy of the distribution drawn from (after top-k and top-p; nats).
    pub neg_entropy: f32,
    /// The most likely tokens with their probabilities (for the UI's hover card).
    pub candidates: Vec<(u32, f32)>,
}

pub struct SamplingParams {
    pub temperature: f32,
    /// `transformers`' repetition penalty for ids already on the canvas: their logits are
    /// divided by it when positive, multiplied when negative. 1 is off.
    pub repetition_penalty: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    pub top_p: f32,
    pub candidates: usize,
}

/// Samples a token from `logits`, never one of `banned` (sorted); ids in `seen` (sorted: the
/// canvas' tokens) get the repetition penalty, then `prior` (per id, or empty) is subtracted.
pub fn pick(logits: &[f32], banned: &[u32], seen: &[u32], prior: &[f32], p: &SamplingParams, rng: &mut Rng) -> Pick {
    let inv_t = 1.0 / p.temperature;
    // The temperature-scaled distribution over the allowed ids: banned and non-finite logits
    // get -∞, which the vector exp turns into exactly 0.
    let mut probs: Vec<f32> = logits.iter().map(|&l| if l.is_finite() { l * inv_t } else { f32::NEG_INFINITY }).collect();
    if p.repetition_penalty != 1.0 {
        for &t in seen {
            if let (Some(x), Some(&l)) = (probs.get_mut(t as usize), logits.get(t as usize)) {
                if l.is_finite() {
                    *x = penalized(l, p.repetition_penalty) * inv_t;
                }
            }
        }
    }
    for (x, lp) in probs.iter_mut().zip(prior) {
        *x -= lp * inv_t;
    }
    for &b in banned {
        if let Some(x) = probs.get_mut(b as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    let z = simd::exp_shifted_row(&mut probs);
    if !(z > 0.0) || !z.is_finite() {
        return degenerate(logits.len(), banned);
    }
    let inv_z = 1.0 / z;
    simd::map_in_place(&mut probs, |v| simd::mul(v, simd::splat(inv_z)));
    // Candidates ordered by probability: only the head of the distribution matters.
    let k = if p.top_k == 0 { probs.len() } else { p.top_k.min(probs.len()) };
    let mut order: Vec<u32> = (0..probs.len() as u32).collect();
    let by_prob = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]);
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, by_prob);
        order.truncate(k);
    }
    order.sort_unstable_by(by_prob);
    let ranked: Vec<(u32, f32)> = order.iter().map(|&t| (t, probs[t as usize])).collect();
    from_ranked(&ranked, p, rng)
}

/// [`pick`] from a [`Ranked`] row (`ids`, `scaled`, `log_z`) whose `k` equals the top-k of
/// `p`: the same distribution, so the same choices for the same random draws.
pub fn pick_ranked(ids: &[u32], scaled: &[f32], log_z: f32, vocab: usize, banned: &[u32], p: &SamplingParams, rng: &mut Rng) -> Pick {
    if !log_z.is_finite() {
        return degenerate(vocab, banned);
    }
    let ranked: Vec<(u32, f32)> = ids.iter().zip(scaled).map(|(&t, &v)| (t, (v - log_z).exp())).collect();
    from_ranked(&ranked, p, rng)
}

/// Degenerate logits (all banned or NaN): the first allowed id.
fn degenerate(vocab: usize, banned: &[u32]) -> Pick {
    let token = (0..vocab as u32).find(|i| banned.binary_search(i).is_err()).unwrap_or(0);
    Pick { token, confidence: 0.0, margin: 0.0, neg_entropy: f32::NEG_INFINITY, candidates: vec![] }
}

/// Top-p and the draw over the top-k tokens with their probabilities, most likely first.
fn from_ranked(ranked: &[(u32, f32)], p: &SamplingParams, rng: &mut Rng) -> Pick {
    // Nucleus: the shortest prefix whose mass reaches top_p.
    let mut mass = 0.0;
    let mut cut = ranked.len();
    for (i, &(_, q)) in ranked.iter().enumerate() {
        mass += q;
        if mass >= p.top_p {
            cut = i + 1;
            break;
        }
    }
    let kept = &ranked[..cut.max(1)];
    let total: f32 = kept.iter().map(|&(_, q)| q).sum();
    let mut u = rng.next_f32() * total;
    let mut chosen = kept[kept.len() - 1];
    for &(t, q) in kept {
        u -= q;
        if u <= 0.0 {
            chosen = (t, q);
            break;
        }
    }
    let candidates = ranked.iter().take(p.candidates).copied().collect();
    let margin = ranked[0].1 - ranked.get(1).map_or(0.0, |r| r.1);
    let neg_entropy = kept.iter().filter(|r| r.1 > 0.0).map(|&(_, q)| (q / total) * (q / total).ln()).sum();
    Pick { token: chosen.0, confidence: chosen.1, margin, neg_entropy, candidates }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(top_k: usize, top_p: f32) -> SamplingParams {
        SamplingParams { temperature: 1.0, repetition_penalty: 1.0, top_k, top_p, candidates: 3 }
    }

    #[test]
    fn top_k_one_is_greedy_and_skips_banned() {
        let logits = [0.0, 5.0, 3.0, 4.0];
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            assert_eq!(pick(&logits, &[], &[], &[], &params(1, 1.0), &mut rng).token, 1);
            assert_eq!(pick(&logits, &[1], &[], &[], &params(1, 1.0), &mut rng).token, 3);
        }
    }

    #[test]
    fn margin_and_entropy_describe_the_distribution_not_the_draw() {
        // p = [0.5, 0.3, 0.2]: whichever token is drawn, the margin is 0.2 and the entropy
        // that of p; with top-k 2 the draw is from [0.625, 0.375].
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let h = |p: &[f32]| -p.iter().map(|q| q * q.ln()).sum::<f32>();
        let mut rng = Rng::new(5);
        let mut drawn = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = pick(&logits, &[], &[], &[], &params(0, 1.0), &mut rng);
            drawn.insert(p.token);
            assert!((p.margin - 0.2).abs() < 1e-5, "{}", p.margin);
            assert!((p.neg_entropy + h(&[0.5, 0.3, 0.2])).abs() < 1e-5, "{}", p.neg_entropy);
            let p = pick(&logits, &[], &[], &[], &params(2, 1.0), &mut rng);
            assert!((p.neg_entropy + h(&[0.625, 0.375])).abs() < 1e-5, "{}", p.neg_entropy);
        }
        assert_eq!(drawn.len(), 3);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p ≈ [0.0003, 0.88, 0.12, 0.0000..]: top_p 0.5 leaves only token 1.
        let logits = [-2.0, 6.0, 4.0, -9.0];
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            assert_eq!(pick(&logits, &[], &[], &[], &params(0, 0.5), &mut rng).token, 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let logits = [0.0, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut rng = Rng::new(3);
        let n = 4000;
        let ones = (0..n).filter(|_| pick(&logits, &[], &[], &[], &params(0, 1.0), &mut rng).token == 1).count();
        let frac = ones as f32 / n as f32;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }

    #[test]
    fn ranked_rows_give_the_same_picks_as_whole_rows() {
        // What a device ranker returns (the top-k and the normaliser) is enough for the
        // sampler: same tokens, candidates and confidences for the same random draws.
        let vocab = 300;
        let banned = [0u32, 2, 7];
        let mut data = Rng::new(11);
        for (top_k, top_p, temperature) in [(50, 0.95, 1.0), (1, 1.0, 1.0), (7, 0.5, 0.7), (300, 0.9, 1.3)] {
            let p = SamplingParams { temperature, repetition_penalty: 1.0, top_k, top_p, candidates: 5 };
            let (mut a, mut b) = (Rng::new(4), Rng::new(4));
            for _ in 0..200 {
                let mut row: Vec<f32> = (0..vocab).map(|_| 6.0 * data.next_f32() - 3.0).collect();
                row[5] = f32::NAN;
                let whole = pick(&row, &banned, &[], &[], &p, &mut a);
                let r = rank(&row, vocab, &Scoring { k: top_k, temperature, banned: banned.to_vec(), repetition_penalty: 1.0, seen: vec![] });
                let part = pick_ranked(&r.ids, &r.scaled, r.log_z[0], vocab, &banned, &p, &mut b);
                assert_eq!(whole.token, part.token);
                assert!((whole.confidence - part.confidence).abs() <= 1e-5 * whole.confidence.max(1e-3));
                let ids = |c: &[(u32, f32)]| c.iter().map(|x| x.0).collect::<Vec<_>>();
                assert_eq!(ids(&whole.candidates), ids(&part.candidates));
                assert!(!banned.contains(&part.token) && part.token != 5);
            }
        }
        // No allowed id at all: the same fallback either way.
        let row = [f32::NAN, 1.0, 2.0];
        let p = SamplingParams { temperature: 1.0, repetition_penalty: 1.0, top_k: 2, top_p: 1.0, candidates: 0 };
        let r = rank(&row, 3, &Scoring { k: 2, temperature: 1.0, banned: vec![1, 2], repetition_penalty: 1.0, seen: vec![] });
        assert!(r.log_z[0].is_nan());
        let part = pick_ranked(&r.ids, &r.scaled, r.log_z[0], 3, &[1, 2], &p, &mut Rng::new(0));
        assert_eq!(part.token, pick(&row, &[1, 2], &[], &[], &p, &mut Rng::new(0)).token);
    }

    #[test]
    fn the_repetition_penalty_lowers_seen_ids_in_both_forms() {
        // Token 1 leads until it is seen; penalised it loses to token 2, in whole rows and
        // in the ranked form alike.
        let row = [0.5, 3.0, 2.8, -1.0];
        let seen = [1u32, 3];
        let p = |pen| SamplingParams { temperature: 1.0, repetition_penalty: pen, top_k: 1, top_p: 1.0, candidates: 4 };
        assert_eq!(pick(&row, &[], &seen, &[], &p(1.0), &mut Rng::new(0)).token, 1);
        let whole = pick(&row, &[], &seen, &[], &p(1.3), &mut Rng::new(0));
        assert_eq!(whole.token, 2);
        let r = rank(&row, 4, &Scoring { k: 1, temperature: 1.0, banned: vec![], repetition_penalty: 1.3, seen: seen.to_vec() });
        assert_eq!(r.ids, [2]);
        assert_eq!(r.scaled, [2.8]);
        let ranked = pick_ranked(&r.ids, &r.scaled, r.log_z[0], 4, &[], &p(1.3), &mut Rng::new(0));
        assert_eq!(ranked.token, 2);
        assert!((ranked.confidence - whole.confidence).abs() < 1e-6);
        // A negative logit is multiplied: further down.
        assert_eq!(penalized(-1.0, 1.3), -1.3);
    }

    #[test]
    fn confidence_and_candidates_are_probabilities() {
        let logits = [1.0, 2.0, 3.0];
        let pk = pick(&logits, &[], &[], &[], &params(0, 1.0), &mut Rng::new(0));
        assert!(pk.confidence > 0.0 && pk.confidence < 1.0);
        assert_eq!(pk.candidates[0].0, 2);
        let s: f32 = pk.candidates.iter().map(|c| c.1).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}
