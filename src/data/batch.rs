//! Mini-batches as lists of example indices.
//!
//! Batches hold indices rather than data so one function serves every data set: the caller
//! gathers the examples (for images, with [`ImageSet::gather_normalized`]). Shuffling is driven
//! by the caller's seeded [`Rng`], so a training run's order of examples is reproducible.
//!
//! [`ImageSet::gather_normalized`]: super::ImageSet::gather_normalized

use crate::rng::Rng;

/// The indices `0..n` in a random order drawn from `rng`, cut into batches of `batch_size`.
///
/// Every index appears exactly once. The last batch holds the `n % batch_size` leftovers when
/// `n` is not a multiple of `batch_size`; it is kept, so every example is seen each epoch.
/// The same generator state always gives the same batches. `n == 0` gives no batches.
///
/// Panics if `batch_size` is 0.
///
/// ```
/// use glassbox::data::shuffled_batches;
/// use glassbox::rng::Rng;
/// let batches = shuffled_batches(10, 4, &mut Rng::new(1));
/// let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
/// assert_eq!(sizes, [4, 4, 2]);
/// ```
pub fn shuffled_batches(n: usize, batch_size: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    check_batch_size("shuffled_batches", batch_size);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// The indices `0..n` in order, cut into batches of `batch_size`, the last one possibly
/// shorter; for evaluation, where order does not matter and reproducibility is free.
///
/// Panics if `batch_size` is 0.
///
/// ```
/// use glassbox::data::sequential_batches;
/// assert_eq!(sequential_batches(5, 2), vec![vec![0, 1], vec![2, 3], vec![4]]);
/// ```
pub fn sequential_batches(n: usize, batch_size: usize) -> Vec<Vec<usize>> {
    check_batch_size("sequential_batches", batch_size);
    (0..n).step_by(batch_size).map(|start| (start..n.min(start.saturating_add(batch_size))).collect()).collect()
}

fn check_batch_size(caller: &str, batch_size: usize) {
    assert!(batch_size > 0, "{caller}: batch_size must be at least 1, got 0");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_gives_no_batches() {
        assert!(shuffled_batches(0, 3, &mut Rng::new(0)).is_empty());
        assert!(sequential_batches(0, 3).is_empty());
    }

    #[test]
    #[should_panic(expected = "sequential_batches: batch_size must be at least 1, got 0")]
    fn zero_batch_size_panics() {
        sequential_batches(4, 0);
    }
}
