//! Rate limits per subject (an address, an OAuth client) on what an anonymous caller can make a
//! node do in bulk: sign-ups and token issuance. Token buckets in the node's memory, on the
//! world's clock, so both worlds limit alike; each node limits on its own (a cluster of `n`
//! nodes behind a balancer lets `n` times through at most).

use crate::http::Response;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A bucket's size and how fast it fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Milliseconds to earn one more.
    pub every_ms: u64,
}

/// Sign-ups from one address: 20 at once, then one every 3 s.
pub const SIGNUP_PER_ADDRESS: Rate = Rate {
    burst: 20,
    every_ms: 3_000,
};
/// Tokens issued to one client: 50 at once, then ten a second (a client needs one an hour;
/// a load test's client far more).
pub const TOKEN_PER_CLIENT: Rate = Rate {
    burst: 50,
    every_ms: 100,
};
/// Token requests from one address, whatever the client: 300 at once, then 50 a second.
pub const TOKEN_PER_ADDRESS: Rate = Rate {
    burst: 300,
    every_ms: 20,
};

/// Subjects a limiter keeps at most: past it, full buckets (idle subjects) are forgotten
/// first, then the ones that filled longest ago; a flood of new addresses costs memory up to
/// this bound and no more.
pub const SUBJECTS_MAX: usize = 50_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Requests left, in thousandths.
    milli: u64,
    at_ms: u64,
}

/// Token buckets by subject.
#[derive(Default, Debug)]
pub struct Limiter {
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

impl Limiter {
    /// Takes one request from `subject`'s bucket; when it is empty, how many whole seconds
    /// until it has one again.
    pub fn take(&self, subject: &str, rate: Rate, now_ms: u64) -> Result<(), u64> {
        let full = u64::from(rate.burst) * 1000;
        let every = rate.every_ms.max(1);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= SUBJECTS_MAX && !buckets.contains_key(subject) {
            forget_some(&mut buckets, full, every, now_ms);
        }
        let b = buckets.entry(subject.to_string()).or_insert(Bucket {
            milli: full,
            at_ms: now_ms,
        });
        let earned = now_ms.saturating_sub(b.at_ms).saturating_mul(1000) / every;
        b.milli = (b.milli.saturating_add(earned)).min(full);
        b.at_ms = now_ms;
        if b.milli >= 1000 {
            b.milli -= 1000;
            Ok(())
        } else {
            Err(((1000 - b.milli) * every)
                .div_ceil(1000)
                .div_ceil(1000)
                .max(1))
        }
    }

    /// Subjects held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room: every bucket that has filled again goes, or else the tenth least recently used.
fn forget_some(buckets: &mut BTreeMap<String, Bucket>, full: u64, every: u64, now_ms: u64) {
    let before = buckets.len();
    buckets.retain(|_, b| {
        b.milli + now_ms.saturating_sub(b.at_ms).saturating_mul(1000) / every < full
    });
    if buckets.len() < before {
        return;
    }
    let mut ages: Vec<(u64, String)> = buckets.iter().map(|(k, b)| (b.at_ms, k.clone())).collect();
    ages.sort();
    for (_, k) in ages.into_iter().take(before / 10 + 1) {
        buckets.remove(&k);
    }
}

/// The answer to a request over a limit (logged as a security event).
pub fn too_many(what: &str, origin: &str, retry_after_s: u64) -> Response {
    crate::security::event("rate_limited", &[("what", what), ("origin", origin)]);
    Response::error(
        429,
        "too_many_requests",
        format!("too many {what}; try again in {retry_after_s} s"),
    )
    .header("retry-after", &retry_after_s.to_string())
}

/// The limiters of one node.
#[derive(Default, Debug)]
pub struct Limits {
    pub signups: Limiter,
    pub tokens_per_client: Limiter,
    pub tokens_per_address: Limiter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_fills_at_its_rate() {
        let l = Limiter::default();
        let rate = Rate {
            burst: 3,
            every_ms: 1_000,
        };
        for _ in 0..3 {
            assert_eq!(l.take("a", rate, 0), Ok(()));
        }
        assert_eq!(l.take("a", rate, 0), Err(1));
        // Another subject has its own bucket.
        assert_eq!(l.take("b", rate, 0), Ok(()));
        assert_eq!(l.take("a", rate, 999), Err(1));
        assert_eq!(l.take("a", rate, 1_000), Ok(()));
        assert_eq!(l.take("a", rate, 1_000), Err(1));
    }

    #[test]
    fn a_flood_of_subjects_is_bounded() {
        let l = Limiter::default();
        let rate = SIGNUP_PER_ADDRESS;
        for i in 0..(SUBJECTS_MAX + 5_000) {
            let _ = l.take(&format!("address:{i}"), rate, i as u64);
        }
        assert!(l.len() <= SUBJECTS_MAX, "{}", l.len());
    }
}
