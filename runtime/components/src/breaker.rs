//! A circuit breaker per database: after consecutive failures a node stops waiting on a dead
//! database and fails at once for a backoff period, then lets one request through to probe it.
//! The state machine is component logic, so the real and the simulated worlds trip and recover
//! alike; each world only supplies the clock and the time bound on one operation.

pub use apim_topology::timing::{CATCH_UP_MS, FAILURES_TO_OPEN, MAX_OPEN_MS, OPEN_MS};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    /// Failing at once until `until_ms`; `backoff_ms` is the period it opened for.
    Open {
        until_ms: u64,
        backoff_ms: u64,
    },
    /// One request is probing the database; the others fail at once until it answers.
    Probing {
        backoff_ms: u64,
    },
}

/// Why a request was not sent to the database: it is known to be down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// When to try again, in whole seconds (for `Retry-After`).
    pub retry_after_s: u64,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change is one assignment: a poisoned lock still holds a whole state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        *self.lock()
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state(), State::Closed { .. })
    }

    /// Whether a request may go to the database now; past the backoff, the first one does, as
    /// the probe.
    pub fn admit(&self, now_ms: u64) -> Result<(), Refused> {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => Ok(()),
            State::Open {
                until_ms,
                backoff_ms,
            } if now_ms >= until_ms => {
                *s = State::Probing { backoff_ms };
                Ok(())
            }
            State::Open { until_ms, .. } => Err(Refused {
                retry_after_s: (until_ms - now_ms).div_ceil(1000).max(1),
            }),
            State::Probing { .. } => Err(Refused { retry_after_s: 1 }),
        }
    }

    /// The outcome of an admitted request.
    pub fn record(&self, now_ms: u64, ok: bool) {
        let mut s = self.lock();
        *s = match (*s, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < FAILURES_TO_OPEN => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Closed { .. }, false) => State::Open {
                until_ms: now_ms + OPEN_MS,
                backoff_ms: OPEN_MS,
            },
            (State::Probing { backoff_ms }, false) => {
                let backoff_ms = (backoff_ms * 2).min(MAX_OPEN_MS);
                State::Open {
                    until_ms: now_ms + backoff_ms,
                    backoff_ms,
                }
            }
            // A request admitted before the breaker opened: the state already says enough.
            (open @ State::Open { .. }, false) => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_consecutive_failures_probes_after_the_backoff_and_closes_on_success() {
        let b = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert_eq!(b.admit(0), Ok(()));
            b.record(0, false);
        }
        assert!(!b.is_open(), "not before {FAILURES_TO_OPEN} failures");
        b.record(0, true);
        for _ in 0..FAILURES_TO_OPEN {
            b.record(10, false);
        }
        assert_eq!(b.admit(10), Err(Refused { retry_after_s: 1 }));
        // Past the backoff one request probes; the others still fail at once.
        assert_eq!(b.admit(10 + OPEN_MS), Ok(()));
        assert_eq!(b.admit(10 + OPEN_MS), Err(Refused { retry_after_s: 1 }));
        // A failed probe doubles the backoff.
        b.record(2_000, false);
        assert_eq!(
            b.state(),
            State::Open {
                until_ms: 2_000 + 2 * OPEN_MS,
                backoff_ms: 2 * OPEN_MS
            }
        );
        assert_eq!(b.admit(2_500), Err(Refused { retry_after_s: 2 }));
        assert_eq!(b.admit(4_000), Ok(()));
        b.record(4_000, true);
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn the_backoff_stops_growing_at_its_ceiling() {
        let b = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN {
            b.record(0, false);
        }
        let mut now = 0;
        for _ in 0..20 {
            now += MAX_OPEN_MS;
            assert_eq!(b.admit(now), Ok(()));
            b.record(now, false);
        }
        assert_eq!(
            b.state(),
            State::Open {
                until_ms: now + MAX_OPEN_MS,
                backoff_ms: MAX_OPEN_MS
            }
        );
    }
}
