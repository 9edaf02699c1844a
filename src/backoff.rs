//! The one backoff of every reconnect and restart loop: starts at `min`, doubles up to `max`,
//! back to `min` on `reset` (after a success). Loops with more rules (the RTSP upstream's jitter
//! and shorter ceiling after a loss) build them from `peek_jittered` and `advance_capped`.
//! Pure: the caller sleeps and passes chance in.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), next: min }
    }

    /// The wait before the next attempt; the one after it is twice as long (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// The wait `next_delay` would give, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// `peek` jittered into [half, all] of it; `rnd` in [0, 1) is the caller's chance.
    pub fn peek_jittered(&self, rnd: f64) -> Duration {
        self.next.mul_f64(0.5 + rnd.clamp(0.0, 1.0) * 0.5)
    }

    /// Advances as `next_delay` does, but to at most `cap` this time (a lower ceiling for a while).
    pub fn advance_capped(&mut self, cap: Duration) {
        self.next = (self.next * 2).min(self.max).min(cap);
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        let got: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(got, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.peek(), ms(200));
        assert_eq!(b.next_delay(), ms(200));
        assert_eq!(Backoff::new(ms(5), ms(1)).next_delay(), ms(5), "max below min is min");
    }

    #[test]
    fn jitter_stays_within_half_and_all_and_a_cap_lowers_the_ceiling() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(250), ms(10_000));
        assert_eq!(b.peek_jittered(0.0), ms(125));
        assert_eq!(b.peek_jittered(0.99).as_millis(), 248);
        assert_eq!(b.peek(), ms(250), "peeking does not advance");
        b.advance_capped(ms(800));
        b.advance_capped(ms(800));
        assert_eq!(b.peek(), ms(800));
        b.advance_capped(ms(800));
        assert_eq!(b.peek(), ms(800));
        b.advance_capped(ms(60_000));
        assert_eq!(b.peek(), ms(1_600));
        for _ in 0..10 {
            b.advance_capped(ms(60_000));
        }
        assert_eq!(b.peek(), ms(10_000), "the cap never lifts the ceiling above max");
    }
}
