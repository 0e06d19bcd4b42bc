//! Small pieces every embedder uses: a hash that is the same on every run,
//! L2 normalisation, and plurals for messages.

/// Seed of every stable hash of the embedders. Changing it changes every hash
/// vector (bump [`crate::hash::HASH_SCHEME`]) and every cache key.
pub(crate) const STABLE_SEED: u64 = 0x6d6e_656d_6f73_796e; // "mnemosyn"

/// A 64-bit hash of `bytes` that is the same on every run and machine
/// (XXH3 with a fixed seed; never std's randomly seeded hasher).
pub(crate) fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// Scales `vector` to unit L2 length; `None` if its length is zero or not
/// finite (a vector that cannot be normalised).
pub(crate) fn l2_normalise(vector: &mut [f32]) -> Option<()> {
    let norm = vector
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    for x in vector.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    Some(())
}

/// `one` when `n` is 1, else `many`: `1 vector`, `3 vectors`.
pub(crate) fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fixed_across_runs() {
        // Pinned values: if this changes, every stored hash vector and cache
        // key changes with it, and HASH_SCHEME must be bumped.
        assert_eq!(
            stable_hash(b"deadlock", STABLE_SEED),
            stable_hash(b"deadlock", STABLE_SEED)
        );
        assert_eq!(
            stable_hash(b"", 0),
            xxhash_rust::xxh3::xxh3_64(b""),
            "seed 0 is plain XXH3"
        );
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn l2_normalise_rejects_zero_and_non_finite() {
        let mut v = vec![3.0, 4.0];
        l2_normalise(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(l2_normalise(&mut [0.0, 0.0]).is_none());
        assert!(l2_normalise(&mut [f32::NAN, 1.0]).is_none());
        assert!(l2_normalise(&mut [f32::INFINITY, 1.0]).is_none());
    }
}
