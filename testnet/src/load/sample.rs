//! Which key each tx touches besides its sender: the recipient account (transfer), the name
//! (pay-name) or the state slot (work), drawn from a [`Distribution`] over `0..keys`.

use rand::RngExt;
use rand_distr::{Distribution as _, Zipf};

use super::{Distribution, LoadError};

/// Draws key indices in `0..keys`; index 0 is the hot key and Zipf's rank 1.
#[derive(Clone, Debug)]
pub struct Sampler {
    keys: usize,
    shape: Shape,
}

#[derive(Clone, Debug)]
enum Shape {
    Uniform,
    Zipf(Zipf<f64>),
    /// The chance that a draw is the hot key, besides uniform draws landing on it.
    Hot(f64),
}

impl Sampler {
    pub fn new(distribution: &Distribution, keys: usize) -> Result<Sampler, LoadError> {
        if keys == 0 {
            return Err(LoadError::Invalid(
                "a distribution needs at least one key".into(),
            ));
        }
        distribution.check()?;
        let shape = match *distribution {
            Distribution::Uniform => Shape::Uniform,
            Distribution::Zipf(s) => Shape::Zipf(
                Zipf::new(keys as f64, s)
                    .map_err(|e| LoadError::Invalid(format!("zipf:{s} over {keys} keys: {e}")))?,
            ),
            Distribution::Hot(percent) => Shape::Hot(percent / 100.0),
        };
        Ok(Sampler { keys, shape })
    }

    pub fn keys(&self) -> usize {
        self.keys
    }

    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> usize {
        match &self.shape {
            Shape::Uniform => rng.random_range(0..self.keys),
            // Zipf draws ranks 1..=keys as floats.
            Shape::Zipf(zipf) => (zipf.sample(rng) as usize).clamp(1, self.keys) - 1,
            Shape::Hot(p) if rng.random_bool(*p) => 0,
            Shape::Hot(_) => rng.random_range(0..self.keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn histogram(distribution: Distribution, keys: usize, draws: usize, seed: u64) -> Vec<usize> {
        let sampler = Sampler::new(&distribution, keys).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut counts = vec![0; keys];
        for _ in 0..draws {
            counts[sampler.sample(&mut rng)] += 1;
        }
        counts
    }

    #[test]
    fn hot_100_always_picks_the_hot_key_and_hot_0_is_uniform() {
        let seed = 11;
        println!("seed {seed}");
        let all_hot = histogram(Distribution::Hot(100.0), 50, 10_000, seed);
        assert_eq!(all_hot[0], 10_000);
        let none_hot = histogram(Distribution::Hot(0.0), 50, 10_000, seed);
        assert!(none_hot.iter().all(|&c| c > 0), "{none_hot:?}");
        assert!(none_hot[0] < 500, "{none_hot:?}");
        let tenth = histogram(Distribution::Hot(10.0), 50, 100_000, seed);
        // 10% hot plus 90% / 50 uniform draws that land on key 0.
        let share = tenth[0] as f64 / 100_000.0;
        assert!((0.11..0.13).contains(&share), "hot share {share}");
    }

    #[test]
    fn zipf_skews_towards_low_ranks() {
        let seed = 12;
        println!("seed {seed}");
        let counts = histogram(Distribution::Zipf(1.1), 1_000, 100_000, seed);
        assert!(
            counts[0] > counts[1] && counts[1] > counts[10],
            "{:?}",
            &counts[..12]
        );
        let top_ten: usize = counts[..10].iter().sum();
        let bottom_half: usize = counts[500..].iter().sum();
        assert!(
            top_ten > bottom_half,
            "top ten {top_ten}, bottom half {bottom_half}"
        );
        assert!(counts.iter().sum::<usize>() == 100_000);
    }

    #[test]
    fn uniform_covers_the_range_evenly() {
        let seed = 13;
        println!("seed {seed}");
        let counts = histogram(Distribution::Uniform, 20, 20_000, seed);
        assert!(
            counts.iter().all(|&c| (800..1_200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(histogram(Distribution::Uniform, 1, 100, seed), [100]);
    }

    #[test]
    fn draws_are_deterministic_per_seed() {
        for distribution in [
            Distribution::Uniform,
            Distribution::Zipf(0.8),
            Distribution::Hot(30.0),
        ] {
            let draws = |seed: u64| {
                let sampler = Sampler::new(&distribution, 100).unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                (0..200)
                    .map(|_| sampler.sample(&mut rng))
                    .collect::<Vec<_>>()
            };
            assert_eq!(draws(5), draws(5), "{distribution}");
            assert_ne!(draws(5), draws(6), "{distribution}");
        }
    }

    #[test]
    fn samplers_refuse_no_keys_and_bad_parameters() {
        let cases: [(Distribution, usize, &str); 4] = [
            (Distribution::Uniform, 0, "at least one key"),
            (Distribution::Zipf(0.0), 10, "zipf:0"),
            (Distribution::Zipf(f64::NAN), 10, "zipf:NaN"),
            (Distribution::Hot(101.0), 10, "hot:101"),
        ];
        for (distribution, keys, want) in cases {
            let error = Sampler::new(&distribution, keys).unwrap_err().to_string();
            assert!(error.contains(want), "{error}");
        }
    }
}
