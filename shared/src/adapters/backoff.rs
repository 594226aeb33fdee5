//! Waits between retries. Every retry loop sleeps a jittered time, so callers that failed
//! together (concurrent tasks, functions throttled by the same table) do not retry in step.

use std::time::Duration;

/// A random time between half of `step` and all of it.
pub(crate) fn jitter(step: Duration) -> Duration {
    step.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Exponential step for retry `attempt` (0-based): `base * 2^attempt`, at most `cap`, jittered.
pub(crate) fn exponential(base: Duration, attempt: u32, cap: Duration) -> Duration {
    jitter(base.saturating_mul(1 << attempt.min(16)).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole_step_and_varies() {
        let step = Duration::from_millis(400);
        let waits: Vec<Duration> = (0..200).map(|_| jitter(step)).collect();
        assert!(waits.iter().all(|w| *w >= step / 2 && *w <= step), "{waits:?}");
        let distinct: std::collections::HashSet<Duration> = waits.iter().copied().collect();
        assert!(distinct.len() > 100, "waits barely vary: {} distinct of 200", distinct.len());
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(25), Duration::from_secs(2));
        for attempt in 0..12 {
            let step = (base * 2u32.pow(attempt)).min(cap);
            let wait = exponential(base, attempt, cap);
            assert!(wait >= step / 2 && wait <= step, "attempt {attempt}: {wait:?} for step {step:?}");
        }
        assert!(exponential(base, u32::MAX, cap) <= cap);
    }
}
