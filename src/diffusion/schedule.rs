//! How many masks remain after each denoising step.

crate::choice_enum! {
    pub enum Schedule {
        /// The mask rate falls linearly: with 10 steps, 1.0, 0.9, …, 0.1 before each step (the
        /// classic recipe), an equal share of tokens revealed per step.
        Linear = "linear",
        /// Mask rate cos(π/2 · s/n): few tokens early, when context is thin, more later.
        Cosine = "cosine",
    }
}

impl Schedule {
    /// The mask rate before step `i` (0-based) of `n`.
    pub fn rate(self, i: usize, n: usize) -> f64 {
        let x = i as f64 / n.max(1) as f64;
        match self {
            Schedule::Linear => 1.0 - x,
            Schedule::Cosine => (std::f64::consts::FRAC_PI_2 * x).cos(),
        }
    }

    /// Masks left after step `i` of `n`, starting from `m0`; 0 after the last step.
    pub fn remaining_after(self, m0: usize, i: usize, n: usize) -> usize {
        if i + 1 >= n {
            return 0;
        }
        match self {
            // Integer arithmetic: 100 × 0.7 must be 70, not 69.999….
            Schedule::Linear => m0 * (n - i - 1) / n,
            Schedule::Cosine => ((m0 as f64) * self.rate(i + 1, n) + 1e-9).floor().clamp(0.0, m0 as f64) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ten_steps_is_the_classic_recipe() {
        let rates: Vec<f64> = (0..10).map(|i| Schedule::Linear.rate(i, 10)).collect();
        for (i, r) in rates.iter().enumerate() {
            assert!((r - (1.0 - 0.1 * i as f64)).abs() < 1e-9);
        }
        let left: Vec<usize> = (0..10).map(|i| Schedule::Linear.remaining_after(100, i, 10)).collect();
        assert_eq!(left, vec![90, 80, 70, 60, 50, 40, 30, 20, 10, 0]);
    }

    #[test]
    fn cosine_is_monotone_and_ends_at_zero() {
        let left: Vec<usize> = (0..8).map(|i| Schedule::Cosine.remaining_after(64, i, 8)).collect();
        assert!(left.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(*left.last().unwrap(), 0);
    }
}
