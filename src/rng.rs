//! A small seeded random number generator, so every random tensor, shuffle and dropout mask in
//! glassbox is reproducible from one `u64` seed without an outside crate.
//!
//! The generator is SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit add and a few
//! xor-shift-multiply rounds per number. It passes BigCrush, is trivially seekable, and is more
//! than good enough for initialising weights and shuffling data; it is not for cryptography.

/// A seeded pseudo-random generator (SplitMix64).
///
/// ```
/// use glassbox::rng::Rng;
/// let mut a = Rng::new(7);
/// let mut b = Rng::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let u = a.uniform();
/// assert!((0.0..1.0).contains(&u));
/// ```
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    /// Box-Muller makes normals in pairs; the second one waits here.
    spare_normal: Option<f64>,
}

/// Everything that fixes an [`Rng`]'s future output (see [`Rng::state`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RngState {
    /// SplitMix64's counter: the next number is a hash of `counter + 0x9E3779B97F4A7C15`.
    pub counter: u64,
    /// The second normal of the last Box-Muller pair, if not yet handed out.
    pub spare_normal: Option<f64>,
}

impl Rng {
    /// A generator whose whole future output is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed, spare_normal: None }
    }

    /// The generator's complete state, for checkpoints: a generator rebuilt from it with
    /// [`Rng::from_state`] continues exactly where this one is.
    ///
    /// ```
    /// use glassbox::rng::Rng;
    /// let mut a = Rng::new(3);
    /// a.normal(); // leaves the pair's second normal waiting, which the state must carry
    /// let mut b = Rng::from_state(a.state());
    /// assert_eq!(a.normal(), b.normal());
    /// assert_eq!(a.next_u64(), b.next_u64());
    /// ```
    pub fn state(&self) -> RngState {
        RngState { counter: self.state, spare_normal: self.spare_normal }
    }

    /// A generator continuing from a state taken with [`Rng::state`].
    pub fn from_state(state: RngState) -> Rng {
        Rng { state: state.counter, spare_normal: state.spare_normal }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Word `index` of a stream keyed by `key`: the `index + 1`-th output of a generator whose
    /// counter starts at `key`, computed directly (SplitMix64 is a hash of a counter). Threads
    /// can fill disjoint parts of one long random array this way and get the same bits as one
    /// thread would.
    ///
    /// ```
    /// use glassbox::rng::{Rng, RngState};
    /// let mut r = Rng::from_state(RngState { counter: 7, spare_normal: None });
    /// r.next_u64();
    /// assert_eq!(r.next_u64(), Rng::stream_word(7, 1));
    /// ```
    pub fn stream_word(key: u64, index: u64) -> u64 {
        mix64(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal sample (mean 0, variance 1) by the Box-Muller transform.
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // 1 - uniform() lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * u2;
        self.spare_normal = Some(radius * angle.sin());
        radius * angle.cos()
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's multiply-and-reject).
    ///
    /// Panics when `n` is zero, since the range is then empty.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below: the range 0..0 is empty");
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = (self.next_u64() as u128) * (n as u128);
            if (product as u64) >= threshold {
                return (product >> 64) as usize;
            }
        }
    }

    /// Shuffles `items` in place (Fisher-Yates), every permutation equally likely.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// SplitMix64's counter step (2^64 divided by the golden ratio, made odd).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of the counter's bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_gives_same_stream_and_different_seeds_differ() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn normal_samples_have_unit_moments() {
        let mut rng = Rng::new(1);
        let n = 200_000;
        let samples: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn below_stays_in_range_and_shuffle_is_a_permutation() {
        let mut rng = Rng::new(9);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[rng.below(5)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "counts {counts:?}");
        }
        let mut v: Vec<usize> = (0..100).collect();
        rng.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
