//! When a client should try to connect again: a sans-IO policy that adapters
//! drive (RFC 6455 §7.2.3, gRPC connection backoff).

use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::rng::{OsSeededRng, Random};

/// How the delay between attempts grows.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// Exponential backoff with jitter: `initial`, then ×`multiplier` after
    /// each failure, each delay randomised by ±`jitter` (a fraction), never
    /// above `max`.
    Exponential {
        /// First backoff delay. Default 1 s.
        initial: Duration,
        /// Growth per failed attempt. Default 1.6.
        multiplier: f64,
        /// Randomisation as a fraction of the delay. Default 0.2 (±20 %).
        jitter: f64,
        /// Cap. Default 120 s.
        max: Duration,
    },
    /// The same delay every time ("retry every N seconds").
    Fixed(Duration),
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            initial: Duration::from_secs(1),
            multiplier: 1.6,
            jitter: 0.2,
            max: Duration::from_secs(120),
        }
    }
}

/// Reconnect settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectConfig {
    /// The delay schedule.
    pub backoff: Backoff,
    /// The first reconnect after a lost connection waits a random time in
    /// `[0, first_delay_max]`, so that many clients dropped at once do not
    /// return at once (§7.2.3). Default 1 s.
    pub first_delay_max: Duration,
    /// Give up after this many consecutive failed attempts. Default: never.
    pub max_attempts: Option<u32>,
    /// After a Close with 1013 (try again later), wait at least this long.
    /// Default 30 s.
    pub try_again_later_min: Duration,
    /// Whether a [`Client`](crate::Client) tries again after a rejection:
    /// a certificate that failed verification (the server's here, or this
    /// side's at the server) or an HTTP 4xx answer to the upgrade (but 408
    /// and 429), which trying again does not fix by itself
    /// ([`Disconnect::is_rejection`](crate::Disconnect::is_rejection)).
    /// Default false: the client reports the typed error and stops, rather
    /// than retrying a misconfiguration forever. Set it for fleets where a
    /// server's certificate or route may be fixed while clients wait.
    pub retry_rejected: bool,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            backoff: Backoff::default(),
            first_delay_max: Duration::from_secs(1),
            max_attempts: None,
            try_again_later_min: Duration::from_secs(30),
            retry_rejected: false,
        }
    }
}

impl ReconnectConfig {
    /// Retry every `interval`, forever.
    #[must_use]
    pub fn fixed(interval: Duration) -> Self {
        ReconnectConfig {
            backoff: Backoff::Fixed(interval),
            first_delay_max: Duration::ZERO,
            ..ReconnectConfig::default()
        }
    }
}

/// The reconnect policy for one client: told what happened, it answers when
/// to try next (`None`: stop trying).
///
/// ```
/// use std::time::{Duration, Instant};
/// use wharf_core::{Reconnect, ReconnectConfig};
///
/// let mut policy = Reconnect::new(ReconnectConfig::default());
/// let now = Instant::now();
/// let first = policy.attempt_failed(now).expect("retries forever");
/// assert!(first - now <= Duration::from_millis(1200)); // 1 s ± 20 %
/// let second = policy.attempt_failed(now).unwrap();
/// assert!(second - now >= Duration::from_millis(1280)); // 1.6 s - 20 %
/// policy.opened(); // a connection reached Open: start over
/// ```
pub struct Reconnect {
    config: ReconnectConfig,
    rng: Box<dyn Random>,
    /// Consecutive failed attempts since the last Open.
    failures: u32,
    /// The un-jittered backoff for the next failure.
    backoff: Duration,
    /// The next delay may not be shorter than this (1013).
    floor: Duration,
}

impl std::fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnect")
            .field("config", &self.config)
            .field("failures", &self.failures)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Reconnect {
    /// A policy with OS-seeded randomness for the jitter.
    #[must_use]
    pub fn new(config: ReconnectConfig) -> Self {
        Self::with_rng(config, Box::new(OsSeededRng::new()))
    }

    /// A policy with injected randomness (deterministic tests).
    #[must_use]
    pub fn with_rng(config: ReconnectConfig, rng: Box<dyn Random>) -> Self {
        let backoff = initial(&config.backoff);
        Reconnect {
            config,
            rng,
            failures: 0,
            backoff,
            floor: Duration::ZERO,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ReconnectConfig {
        &self.config
    }

    /// Consecutive failed attempts since the last Open.
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A connection attempt failed (DNS, TCP, TLS or the handshake). Returns
    /// when to try again, or `None` once `max_attempts` is reached.
    pub fn attempt_failed(&mut self, now: Instant) -> Option<Instant> {
        self.failures = self.failures.saturating_add(1);
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.failures >= max)
        {
            return None;
        }
        let delay = self.next_backoff();
        Some(now + delay)
    }

    /// A connection reached Open: the backoff starts over.
    pub fn opened(&mut self) {
        self.failures = 0;
        self.backoff = initial(&self.config.backoff);
        self.floor = Duration::ZERO;
    }

    /// An open connection was lost; `code` is the peer's close code, if it
    /// sent one. Returns when to reconnect.
    ///
    /// After an ordinary loss the first attempt waits a random time up to
    /// `first_delay_max`. 1012 (service restart) is treated the same; 1013
    /// (try again later) waits at least `try_again_later_min`, then backs off
    /// as after a failure.
    pub fn lost(&mut self, now: Instant, code: Option<CloseCode>) -> Instant {
        if code == Some(CloseCode::TRY_AGAIN_LATER) {
            self.floor = self.config.try_again_later_min;
            self.backoff = self.backoff.max(self.floor);
            let delay = self.next_backoff();
            return now + delay;
        }
        let max = self.config.first_delay_max;
        now + self.random_fraction_of(max)
    }

    /// The jittered delay for this failure, then grow the backoff.
    fn next_backoff(&mut self) -> Duration {
        let delay = match self.config.backoff {
            Backoff::Fixed(d) => d,
            Backoff::Exponential {
                multiplier,
                jitter,
                max,
                ..
            } => {
                let base = self.backoff.min(max);
                let jitter = jitter.clamp(0.0, 1.0);
                // Uniform in [1 - jitter, 1 + jitter].
                let factor = 1.0 - jitter + 2.0 * jitter * self.unit();
                let jittered = base.mul_f64(factor).min(max);
                let grown = base.mul_f64(multiplier.max(1.0));
                self.backoff = grown.min(max);
                jittered
            }
        };
        delay.max(self.floor)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        // 53 random bits → [0, 1).
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn random_fraction_of(&mut self, max: Duration) -> Duration {
        max.mul_f64(self.unit())
    }
}

fn initial(backoff: &Backoff) -> Duration {
    match backoff {
        Backoff::Exponential { initial, .. } => *initial,
        Backoff::Fixed(d) => *d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(config: ReconnectConfig) -> Reconnect {
        Reconnect::with_rng(config, Box::new(OsSeededRng::from_seed([7; 32])))
    }

    #[test]
    fn exponential_with_jitter_and_cap() {
        let mut p = policy(ReconnectConfig::default());
        let now = Instant::now();
        let mut base = 1.0f64;
        for _ in 0..30 {
            let d = (p.attempt_failed(now).unwrap() - now).as_secs_f64();
            let lo = (base * 0.8).min(120.0);
            let hi = (base * 1.2).min(120.0);
            assert!(d >= lo - 1e-9 && d <= hi + 1e-9, "{d} not in [{lo}, {hi}]");
            base = (base * 1.6).min(120.0);
        }
        // Capped: every delay now within 120 s.
        assert!(p.attempt_failed(now).unwrap() - now <= Duration::from_secs(120));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut p = policy(ReconnectConfig::default());
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            p.opened();
            seen.insert(p.attempt_failed(now).unwrap() - now);
        }
        assert!(seen.len() > 15, "jitter gives distinct delays");
    }

    #[test]
    fn reset_after_open() {
        let mut p = policy(ReconnectConfig::default());
        let now = Instant::now();
        for _ in 0..10 {
            let _ = p.attempt_failed(now);
        }
        assert_eq!(p.failures(), 10);
        p.opened();
        assert_eq!(p.failures(), 0);
        assert!(p.attempt_failed(now).unwrap() - now <= Duration::from_millis(1200));
    }

    #[test]
    fn fixed_interval() {
        let mut p = policy(ReconnectConfig::fixed(Duration::from_secs(5)));
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(p.attempt_failed(now).unwrap() - now, Duration::from_secs(5));
        }
        assert_eq!(p.lost(now, None), now);
    }

    #[test]
    fn attempt_limit() {
        let mut p = policy(ReconnectConfig {
            max_attempts: Some(3),
            ..ReconnectConfig::default()
        });
        let now = Instant::now();
        assert!(p.attempt_failed(now).is_some());
        assert!(p.attempt_failed(now).is_some());
        assert!(p.attempt_failed(now).is_none());
        p.opened();
        assert!(p.attempt_failed(now).is_some());
    }

    #[test]
    fn first_delay_after_loss_is_random_and_bounded() {
        let mut p = policy(ReconnectConfig::default());
        let now = Instant::now();
        let delays: Vec<Duration> = (0..50).map(|_| p.lost(now, None) - now).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 40);
        // 1012: a restart is an ordinary loss.
        assert!(p.lost(now, Some(CloseCode::SERVICE_RESTART)) - now <= Duration::from_secs(1));
    }

    #[test]
    fn try_again_later_waits_and_keeps_backing_off() {
        let mut p = policy(ReconnectConfig::default());
        let now = Instant::now();
        let d = p.lost(now, Some(CloseCode::TRY_AGAIN_LATER)) - now;
        assert!(d >= Duration::from_secs(30), "{d:?}");
        // Failures right after keep at least the floor.
        let d2 = p.attempt_failed(now).unwrap() - now;
        assert!(d2 >= Duration::from_secs(30), "{d2:?}");
        p.opened();
        assert!(p.attempt_failed(now).unwrap() - now <= Duration::from_millis(1200));
    }
}
