//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): builds the lookup table of the L4 LB.

use super::error::{EngineError, Result};

/// FNV-1a, 64 bit, with a seed mixed in first (stable across Rust versions).
fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether `n` is prime (trial division; table sizes are at most a few million).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// Fills a table of `size` (prime) slots with backend indices: each backend
/// walks its own permutation (offset, skip) and claims the next free slot
/// in turn, so every backend owns `size / n` or `size / n + 1` slots and
/// adding/removing one backend moves few slots of the others.
pub fn populate(backends: &[Vec<u8>], size: usize) -> Result<Vec<u32>> {
    populate_weighted(backends, &vec![1; backends.len()], size)
}

/// Weighted Maglev: in every round backend `i` claims `weights[i]` slots
/// (each the next free one of its permutation), so backend `i` owns about
/// `size * weights[i] / sum(weights)` slots (within `max(weights)` slots).
pub fn populate_weighted(backends: &[Vec<u8>], weights: &[u32], size: usize) -> Result<Vec<u32>> {
    let n = backends.len();
    if weights.len() != n || weights.contains(&0) {
        return Err(EngineError::Config(
            "maglev needs one positive weight per backend".into(),
        ));
    }
    if n == 0 || size < 2 || n > size {
        return Err(EngineError::Config(format!(
            "maglev needs 1..={size} backends, got {n}"
        )));
    }
    for (i, b) in backends.iter().enumerate() {
        if backends[..i].contains(b) {
            return Err(EngineError::Config(format!("duplicate backend #{i}")));
        }
    }
    let m = size as u64;
    let perm: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| {
            let offset = fnv1a(0x6d61_676c_6576_0001, b) % m;
            let skip = fnv1a(0x6d61_676c_6576_0002, b) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; n];
    let mut table = vec![u32::MAX; size];
    let mut filled = 0;
    loop {
        for (i, &(offset, skip)) in perm.iter().enumerate() {
            for _ in 0..weights[i] {
                let mut c = (offset + next[i] * skip) % m;
                while table[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    return Ok(table);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("backend-{i}").into_bytes())
            .collect()
    }

    #[test]
    fn every_slot_is_filled_evenly() {
        for n in [1, 2, 3, 7, 32] {
            let t = populate(&names(n), 4093).expect("table");
            let mut counts = vec![0usize; n];
            for &b in &t {
                counts[b as usize] += 1;
            }
            let (lo, hi) = (4093 / n, 4093usize.div_ceil(n));
            assert!(
                counts.iter().all(|&c| c == lo || c == hi),
                "n={n}: {counts:?}"
            );
        }
    }

    #[test]
    fn removing_a_backend_moves_few_other_slots() {
        let all = names(10);
        let before = populate(&all, 4093).expect("table");
        let mut fewer = all.clone();
        fewer.remove(3);
        let after = populate(&fewer, 4093).expect("table");
        // map indices of the smaller set back to the original ones
        let orig = |i: u32| if i >= 3 { i + 1 } else { i };
        let kept = before
            .iter()
            .zip(&after)
            .filter(|&(&b, _)| b != 3)
            .filter(|&(&b, &a)| b == orig(a))
            .count();
        let others = before.iter().filter(|&&b| b != 3).count();
        assert!(kept * 100 >= others * 90, "only {kept}/{others} slots kept");
    }

    #[test]
    fn weights_set_the_shares() {
        let w = [2u32, 1, 1];
        let t = populate_weighted(&names(3), &w, 65_537).expect("table");
        let mut counts = [0usize; 3];
        for &b in &t {
            counts[b as usize] += 1;
        }
        // 2:1:1 within max(weight) slots
        assert!(counts[0].abs_diff(65_537 / 2) <= 2, "{counts:?}");
        assert!(counts[1].abs_diff(65_537 / 4) <= 2, "{counts:?}");
        assert!(counts[2].abs_diff(65_537 / 4) <= 2, "{counts:?}");
        assert!(populate_weighted(&names(2), &[1, 0], 13).is_err());
        assert!(populate_weighted(&names(2), &[1], 13).is_err());
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537) && is_prime(4093) && is_prime(2) && is_prime(1_048_573));
        assert!(!is_prime(65_536) && !is_prime(1) && !is_prime(0) && !is_prime(65_539 * 3));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(populate(&[], 13).is_err());
        assert!(populate(&names(20), 13).is_err());
        assert!(populate(&[b"a".to_vec(), b"a".to_vec()], 13).is_err());
    }
}
