//! Product popularity: a few products get most of the views, as in a real shop.
//!
//! Rank `k` (product id `k`) is drawn with probability `1 / (k^s * H(n, s))`, where
//! `H(n, s)` is the generalised harmonic number. `s = 1` is the classic web-cache
//! law; `s = 0` is uniform. The sampling itself is `rand_distr`'s rejection-inversion
//! [`Zipf`](rand_distr::Zipf): constant time per draw, no table of `n` entries.

use rand::Rng;
use rand_distr::Distribution;

/// Draws product ids `1..=n` with Zipf popularity.
#[derive(Clone, Copy, Debug)]
pub struct ZipfIds {
    n: u64,
    dist: rand_distr::Zipf<f64>,
}

impl ZipfIds {
    /// Ids `1..=n`, exponent `s` (`1.0` is typical; `0.0` is uniform).
    ///
    /// ```
    /// use rand::SeedableRng;
    /// let ids = storefront_tools::loadgen::ZipfIds::new(1_000, 1.0).unwrap();
    /// let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    /// let id = ids.sample(&mut rng);
    /// assert!((1..=1_000).contains(&id));
    /// ```
    pub fn new(n: u64, s: f64) -> Result<Self, String> {
        if n == 0 {
            return Err("the catalog is empty: there is no product to ask for".into());
        }
        if !(0.0..=10.0).contains(&s) {
            return Err(format!(
                "Zipf exponent {s}: use a number from 0 (uniform) to 10; 1.0 is typical"
            ));
        }
        let dist = rand_distr::Zipf::new(n as f64, s).map_err(|e| e.to_string())?;
        Ok(Self { n, dist })
    }

    /// How many ids there are.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Never true: there is at least one id.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// One id in `1..=n`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        // The distribution yields whole numbers in [1, n] as floats; clamp guards
        // the float edge.
        (self.dist.sample(rng) as u64).clamp(1, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn frequencies(n: u64, s: f64, draws: u32) -> Vec<f64> {
        let ids = ZipfIds::new(n, s).unwrap_or_else(|e| panic!("{e}"));
        let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
        let mut counts = vec![0u32; n as usize + 1];
        for _ in 0..draws {
            counts[ids.sample(&mut rng) as usize] += 1;
        }
        counts
            .iter()
            .map(|&c| f64::from(c) / f64::from(draws))
            .collect()
    }

    #[test]
    fn frequencies_follow_the_law() {
        for s in [0.8, 1.0, 1.2] {
            let n = 200u64;
            let h: f64 = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).sum();
            let freq = frequencies(n, s, 400_000);
            assert_eq!(freq[0], 0.0, "id 0 is never drawn");
            for k in 1..=20u64 {
                let expected = 1.0 / ((k as f64).powf(s) * h);
                let got = freq[k as usize];
                // Within 5% of the expected share, plus 4 binomial standard deviations.
                let sd = (expected * (1.0 - expected) / 400_000.0).sqrt();
                assert!(
                    (got - expected).abs() <= 0.05 * expected + 4.0 * sd,
                    "s={s} rank {k}: {got:.5} vs {expected:.5}"
                );
            }
            // The head is heavier than the tail, rank by rank.
            assert!(freq[1] > freq[2] && freq[2] > freq[4] && freq[4] > freq[16]);
        }
    }

    #[test]
    fn zero_exponent_is_uniform() {
        let freq = frequencies(10, 0.0, 200_000);
        for f in &freq[1..] {
            assert!((f - 0.1).abs() < 0.01, "{freq:?}");
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(ZipfIds::new(0, 1.0).is_err());
        assert!(ZipfIds::new(10, -1.0).is_err());
        assert!(ZipfIds::new(10, f64::NAN).is_err());
    }

    proptest! {
        #[test]
        fn ids_stay_in_range(n in 1u64..1_000_000, s in 0.0f64..4.0, seed: u64) {
            let ids = ZipfIds::new(n, s).map_err(TestCaseError::fail)?;
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            for _ in 0..64 {
                let id = ids.sample(&mut rng);
                prop_assert!((1..=n).contains(&id), "{id} outside 1..={n}");
            }
        }
    }
}
