//! The restore plan: after a process start, sessions that should be running
//! come back one by one, `spacing` apart plus a random jitter each, never all
//! at once (seed 002: simultaneous starts from one IP end in LOGOUT).

use rand::Rng;
use std::time::Duration;

/// Offsets from now at which to start each of `n` sessions: strictly
/// increasing by at least `spacing`, each with jitter in `jitter_min..=jitter_max`.
pub fn stagger(
    n: usize,
    spacing: Duration,
    jitter_min: Duration,
    jitter_max: Duration,
    rng: &mut impl Rng,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    let mut at = Duration::ZERO;
    for i in 0..n {
        let jitter = if jitter_max > jitter_min {
            rng.random_range(jitter_min..=jitter_max)
        } else {
            jitter_min
        };
        if i > 0 {
            at += spacing;
        }
        at += jitter;
        out.push(at);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn restores_are_spaced_and_jittered() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let s = Duration::from_secs(2);
        let (lo, hi) = (Duration::from_secs(1), Duration::from_secs(3));
        let plan = stagger(20, s, lo, hi, &mut rng);
        assert_eq!(plan.len(), 20);
        assert!(plan[0] >= lo && plan[0] <= hi);
        for w in plan.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= s + lo && gap <= s + hi, "gap {gap:?}");
        }
        let mut again = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(
            plan,
            stagger(20, s, lo, hi, &mut again),
            "reproducible with a seed"
        );
    }

    #[test]
    fn zero_spacing_and_jitter_start_at_once() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let plan = stagger(3, Duration::ZERO, Duration::ZERO, Duration::ZERO, &mut rng);
        assert_eq!(plan, vec![Duration::ZERO; 3]);
    }
}
