//! A circuit breaker per database: after consecutive failures a node stops waiting on a dead
//! database and fails at once; while it is open the node's background probe asks the database
//! (`SELECT 1`, every `PROBE_EVERY_MS`, each bounded by `PROBE_BOUND_MS`), and the first answer
//! closes it. No request of a client is ever the probe: a client never waits on a database known
//! to be down, and a database that comes back is seen within one probe period and bound, so
//! how soon a node serves again does not depend on where a backoff stood (both worlds agree).
//! The state machine is component logic, so the real and the simulated worlds trip and recover
//! alike; each world only supplies the clock and the time bound on one operation.

pub use apim_topology::timing::{CATCH_UP_MS, FAILURES_TO_OPEN, PROBE_BOUND_MS, PROBE_EVERY_MS};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    /// Failing at once; the background probe closes it.
    Open,
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

    /// Whether a client's request may go to the database now.
    pub fn admit(&self) -> Result<(), Refused> {
        match *self.lock() {
            State::Closed { .. } => Ok(()),
            State::Open => Err(Refused {
                retry_after_s: PROBE_EVERY_MS.div_ceil(1000).max(1),
            }),
        }
    }

    /// The outcome of an admitted request, or of a probe: any answer closes the breaker.
    pub fn record(&self, ok: bool) {
        let mut s = self.lock();
        *s = match (*s, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < FAILURES_TO_OPEN => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Closed { .. } | State::Open, false) => State::Open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_consecutive_failures_and_closes_on_the_first_answer() {
        let b = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert_eq!(b.admit(), Ok(()));
            b.record(false);
        }
        assert!(!b.is_open(), "not before {FAILURES_TO_OPEN} failures");
        b.record(true);
        for _ in 0..FAILURES_TO_OPEN {
            b.record(false);
        }
        assert!(b.is_open());
        // Open, no client request goes through, however long it has been.
        for _ in 0..100 {
            assert_eq!(b.admit(), Err(Refused { retry_after_s: 1 }));
        }
        // A failed probe keeps it open; an answer closes it.
        b.record(false);
        assert_eq!(b.state(), State::Open);
        b.record(true);
        assert_eq!(b.state(), State::Closed { failures: 0 });
        assert_eq!(b.admit(), Ok(()));
    }
}
