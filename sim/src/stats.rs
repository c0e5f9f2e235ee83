//! Statistics streamed as the run goes: per operation, counts and a latency histogram for the
//! whole run and for each time window. Nothing per request is kept.

use serde::Serialize;
use std::collections::BTreeMap;

/// The operations clients perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Publish,
    Subscribe,
    Token,
    Invoke,
    Revoke,
}

impl Op {
    pub const ALL: [Op; 5] = [
        Op::Publish,
        Op::Subscribe,
        Op::Token,
        Op::Invoke,
        Op::Revoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Publish => "publish",
            Op::Subscribe => "subscribe",
            Op::Token => "token",
            Op::Invoke => "invoke",
            Op::Revoke => "revoke",
        }
    }

    /// The flow of the flows table an operation belongs to. Revocation is not one of the
    /// table's client hops (it checks that gateways converge), so it judges no flow.
    pub fn flow(self) -> Option<apim_topology::flows::Flow> {
        use apim_topology::flows::Flow;
        match self {
            Op::Publish => Some(Flow::Publish),
            Op::Subscribe => Some(Flow::Subscribe),
            Op::Token | Op::Invoke => Some(Flow::Invoke),
            Op::Revoke => None,
        }
    }
}

/// Latencies in microseconds, in buckets that grow by 2^(1/4): a few percent of error.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

const SUB: u32 = 4;

fn bucket(us: u64) -> usize {
    if us < 16 {
        return us as usize;
    }
    let log = 63 - us.leading_zeros();
    let frac = ((us >> (log - 2)) & 3) as u32;
    (16 + (log - 4) * SUB + frac) as usize
}

fn bucket_value(b: usize) -> u64 {
    if b < 16 {
        return b as u64;
    }
    let k = (b - 16) as u32;
    let log = 4 + k / SUB;
    let frac = u64::from(k % SUB);
    (1u64 << log) + (frac << (log - 2)) + (1u64 << (log - 2)) / 2
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        let b = bucket(us);
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
    }

    /// The latency at quantile `q` (0..=1), in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_value(b);
            }
        }
        0
    }
}

#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub latency: Histogram,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }

    pub fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latency.merge(&other.latency);
    }
}

/// Kinds of failure told apart per operation; past them, `other`.
pub const FAILURE_KINDS: usize = 16;

/// Per operation, per window of `window_us` counted from the start of the workload.
#[derive(Clone, Debug)]
pub struct Stats {
    pub window_us: u64,
    pub windows: Vec<[Tally; 5]>,
    /// Per operation, why those that failed did (the step and its answer's status, `no
    /// answer`, `no token`), over the run; at most [`FAILURE_KINDS`] kinds each.
    pub failures: [BTreeMap<String, u64>; 5],
}

impl Stats {
    pub fn new(window_us: u64, duration_us: u64) -> Stats {
        let n = duration_us.div_ceil(window_us.max(1)) as usize;
        Stats {
            window_us: window_us.max(1),
            windows: vec![Default::default(); n.max(1)],
            failures: Default::default(),
        }
    }

    /// One more failure of `op`, for `why`.
    pub fn failed(&mut self, op: Op, why: &str) {
        let kinds = &mut self.failures[op as usize];
        let why = if kinds.len() < FAILURE_KINDS || kinds.contains_key(why) {
            why
        } else {
            "other"
        };
        *kinds.entry(why.to_string()).or_default() += 1;
    }

    /// A request that started at `start_us` (workload time) and took `took_us`.
    pub fn record(&mut self, op: Op, start_us: u64, took_us: u64, ok: bool) {
        let w = ((start_us / self.window_us) as usize).min(self.windows.len() - 1);
        let t = &mut self.windows[w][op as usize];
        if ok {
            t.ok += 1;
        } else {
            t.failed += 1;
        }
        t.latency.record(took_us);
    }

    /// The operations of `ops` started in [from_us, to_us), summed.
    pub fn between(&self, ops: &[Op], from_us: u64, to_us: u64) -> Tally {
        let mut sum = Tally::default();
        let first = (from_us.div_ceil(self.window_us)) as usize;
        let last = ((to_us / self.window_us) as usize).min(self.windows.len());
        for w in self.windows.iter().take(last).skip(first) {
            for op in ops {
                sum.add(&w[*op as usize]);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close_to_the_recorded_values() {
        let mut h = Histogram::default();
        for us in 1..=10_000 {
            h.record(us);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5_000.0).abs() / 5_000.0 < 0.15, "{p50}");
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.15, "{p99}");
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn windows_sum_what_started_in_them() {
        let mut s = Stats::new(1_000, 10_000);
        s.record(Op::Invoke, 500, 10, true);
        s.record(Op::Invoke, 1_500, 10, false);
        s.record(Op::Token, 1_600, 10, true);
        let t = s.between(&[Op::Invoke], 1_000, 10_000);
        assert_eq!((t.ok, t.failed), (0, 1));
        assert_eq!(s.between(&[Op::Invoke, Op::Token], 0, 10_000).total(), 3);
    }
}
