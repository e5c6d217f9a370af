//! Turning one position's logits into a token: temperature, top-k, top-p, confidence.

use super::rng::Rng;
use crate::backend::simd;

/// The outcome of sampling one position.
#[derive(Debug, Clone)]
pub struct Pick {
    pub token: u32,
    /// Probability of `token` under the temperature-scaled distribution before truncation.
    pub confidence: f32,
    /// The most likely tokens with their probabilities (for the UI's hover card).
    pub candidates: Vec<(u32, f32)>,
}

pub struct SamplingParams {
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    pub top_p: f32,
    pub candidates: usize,
}

/// Samples a token from `logits`, never one of `banned` (sorted).
pub fn pick(logits: &[f32], banned: &[u32], p: &SamplingParams, rng: &mut Rng) -> Pick {
    let inv_t = 1.0 / p.temperature;
    // The temperature-scaled distribution over the allowed ids: banned and non-finite logits
    // get -∞, which the vector exp turns into exactly 0.
    let mut probs: Vec<f32> = logits.iter().map(|&l| if l.is_finite() { l * inv_t } else { f32::NEG_INFINITY }).collect();
    for &b in banned {
        if let Some(x) = probs.get_mut(b as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    let z = simd::exp_shifted_row(&mut probs);
    if !(z > 0.0) || !z.is_finite() {
        // Degenerate logits (all banned or NaN): fall back to the first allowed id.
        let token = (0..logits.len() as u32).find(|i| banned.binary_search(i).is_err()).unwrap_or(0);
        return Pick { token, confidence: 0.0, candidates: vec![] };
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
    // Nucleus: the shortest prefix whose mass reaches top_p.
    let mut mass = 0.0;
    let mut cut = order.len();
    for (i, &t) in order.iter().enumerate() {
        mass += probs[t as usize];
        if mass >= p.top_p {
            cut = i + 1;
            break;
        }
    }
    let kept = &order[..cut.max(1)];
    let total: f32 = kept.iter().map(|&t| probs[t as usize]).sum();
    let mut u = rng.next_f32() * total;
    let mut token = kept[kept.len() - 1];
    for &t in kept {
        u -= probs[t as usize];
        if u <= 0.0 {
            token = t;
            break;
        }
    }
    let candidates = order.iter().take(p.candidates).map(|&t| (t, probs[t as usize])).collect();
    Pick { token, confidence: probs[token as usize], candidates }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(top_k: usize, top_p: f32) -> SamplingParams {
        SamplingParams { temperature: 1.0, top_k, top_p, candidates: 3 }
    }

    #[test]
    fn top_k_one_is_greedy_and_skips_banned() {
        let logits = [0.0, 5.0, 3.0, 4.0];
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            assert_eq!(pick(&logits, &[], &params(1, 1.0), &mut rng).token, 1);
            assert_eq!(pick(&logits, &[1], &params(1, 1.0), &mut rng).token, 3);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p ≈ [0.0003, 0.88, 0.12, 0.0000..]: top_p 0.5 leaves only token 1.
        let logits = [-2.0, 6.0, 4.0, -9.0];
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            assert_eq!(pick(&logits, &[], &params(0, 0.5), &mut rng).token, 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let logits = [0.0, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut rng = Rng::new(3);
        let n = 4000;
        let ones = (0..n).filter(|_| pick(&logits, &[], &params(0, 1.0), &mut rng).token == 1).count();
        let frac = ones as f32 / n as f32;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }

    #[test]
    fn confidence_and_candidates_are_probabilities() {
        let logits = [1.0, 2.0, 3.0];
        let pk = pick(&logits, &[], &params(0, 1.0), &mut Rng::new(0));
        assert!(pk.confidence > 0.0 && pk.confidence < 1.0);
        assert_eq!(pk.candidates[0].0, 2);
        let s: f32 = pk.candidates.iter().map(|c| c.1).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}
