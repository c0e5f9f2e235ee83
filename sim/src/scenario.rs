//! Scenarios: a workload and a fault schedule, read from TOML with the same diagnostics as
//! topology files (file, line, column, hint).

use crate::codes;
use apim_compiler::plan::Plan;
use apim_topology::{Diagnostic, Label, SourceFile, Span};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// How long the key managers' access tokens live in a scenario that does not say: short
/// enough that tokens expire, are renewed and are replayed expired within the default minute
/// (a deployment's own tokens live [`apim_topology::timing::TOKEN_MS`]).
pub const TOKEN_LIFETIME_MS: u64 = 20_000;

/// What clients do, and for how long.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    pub duration_ms: u64,
    /// APIs published before the run starts.
    pub apis: usize,
    /// Subscribed applications (with keys and a token) before the run starts.
    pub applications: usize,
    /// Per second of virtual time.
    pub publish_rate: f64,
    pub subscribe_rate: f64,
    pub token_rate: f64,
    pub invoke_rate: f64,
    pub revoke_rate: f64,
    /// API updates, deprecations and retirements, per second.
    pub lifecycle_rate: f64,
    /// How long a revoked token may still work after its revocation was acknowledged.
    pub revocation_bound_ms: u64,
    /// How long the key manager's access tokens live (clients renew theirs before then).
    pub token_lifetime_ms: u64,
    /// How long the APIs' backend takes to answer, on top of the network: the median.
    pub backend_latency_ms: u64,
    /// The 99th percentile of the backend's answers: the median when the latency is fixed,
    /// above it for a log-normal spread (`backend_latency = { median, p99 }`).
    pub backend_latency_p99_ms: u64,
    /// The share of invokes that are writes (POST with a body: never sent twice), the rest
    /// reads (GET: a balancer sends one again elsewhere when it broke in flight).
    pub invoke_writes: f64,
    /// The share of the backend's reads that break before any answer (a kept-alive connection
    /// it closed as the request went out): the gateway sends a bodiless read once more, never
    /// a write.
    pub backend_breaks: f64,
}

/// The standard normal distribution's 99th percentile.
const Z99: f64 = 2.326_347_874;

impl Workload {
    /// Whether the backend's latency varies from one answer to the next.
    pub fn backend_varies(&self) -> bool {
        self.backend_latency_p99_ms > self.backend_latency_ms && self.backend_latency_ms > 0
    }

    /// One backend answer's added latency, in microseconds, from two uniform draws in [0, 1).
    pub fn backend_sample_us(&self, u1: f64, u2: f64) -> u64 {
        latency_sample_us(self.backend_latency_ms, self.backend_latency_p99_ms, u1, u2)
    }
}

/// A latency with `median_ms` and `p99_ms`, in microseconds, from two uniform draws in [0, 1):
/// log-normal (Box–Muller), the median itself when the p99 is not above it. Bounded by an hour.
pub fn latency_sample_us(median_ms: u64, p99_ms: u64, u1: f64, u2: f64) -> u64 {
    let median = median_ms as f64 * 1000.0;
    if p99_ms <= median_ms || median_ms == 0 {
        return median as u64;
    }
    let sigma = (p99_ms as f64 / median_ms as f64).ln() / Z99;
    // 1 - u1 is in (0, 1]: its logarithm is finite.
    let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (median * (sigma * z).exp()).clamp(0.0, 3.6e9) as u64
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            duration_ms: 60_000,
            apis: 3,
            applications: 6,
            publish_rate: 0.2,
            subscribe_rate: 0.5,
            token_rate: 2.0,
            invoke_rate: 200.0,
            revoke_rate: 0.2,
            lifecycle_rate: 0.1,
            revocation_bound_ms: 1_000,
            token_lifetime_ms: TOKEN_LIFETIME_MS,
            backend_latency_ms: 0,
            backend_latency_p99_ms: 0,
            invoke_writes: 0.0,
            backend_breaks: 0.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultKind {
    Crash {
        node: String,
    },
    ClusterDown {
        cluster: String,
    },
    Partition {
        from: String,
        to: String,
        one_way: bool,
    },
    Isolate {
        node: String,
    },
    DatabaseOutage {
        database: String,
    },
    /// The database accepts connections and never answers (a network partition to it).
    DatabaseBlackhole {
        database: String,
    },
    BalancerOutage {
        balancer: String,
    },
    /// Each node of the cluster in turn drains (`drain_ms`: unready, still serving), stops,
    /// starts again, and `pause_ms` passes before the next.
    RollingRestart {
        cluster: String,
        drain_ms: u64,
        pause_ms: u64,
    },
    /// A node's or balancer's certificate has expired: every TLS handshake with it fails (as
    /// server, and as client of an internal listener) until it is renewed.
    CertExpiry {
        /// A node name, or a balancer name when `balancer` is set.
        name: String,
        balancer: bool,
    },
    Latency {
        from: String,
        to: String,
        one_way: bool,
        added_ms: u64,
    },
    Loss {
        from: String,
        to: String,
        one_way: bool,
        rate_permille: u32,
    },
}

/// One fault: what, from when, for how long (to the end of the run when `for_ms` is absent).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Fault {
    pub at_ms: u64,
    pub for_ms: Option<u64>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scenario {
    pub workload: Workload,
    pub faults: Vec<Fault>,
}

/// Every fault kind: its name, the keys it takes, and what it does.
pub static FAULT_KINDS: &[(&str, &[&str], &str)] = &[
    (
        "crash",
        &["node"],
        "the node's process stops (its memory is lost) and restarts when the fault ends",
    ),
    (
        "cluster-down",
        &["cluster"],
        "every node of the cluster crashes; all restart when the fault ends",
    ),
    (
        "partition",
        &["from", "to", "one_way"],
        "traffic between two networks is dropped, both ways unless one_way = true (then only from -> to)",
    ),
    (
        "isolate",
        &["node"],
        "the node is cut off from every network (it keeps running)",
    ),
    (
        "database-outage",
        &["database"],
        "the database refuses every connection",
    ),
    (
        "database-blackhole",
        &["database"],
        "the database accepts connections and never answers (what a partition to it looks like): each operation waits out the node's bound",
    ),
    (
        "balancer-outage",
        &["balancer"],
        "the load balancer refuses every connection",
    ),
    (
        "rolling-restart",
        &["cluster", "drain", "pause"],
        "each node of the cluster in turn drains (`drain`, default 7s: unready while balancers take it out), stops, starts again, and `pause` (default 6s: the balancers' rise) passes before the next; it lasts as long as that takes, so it takes no `for`",
    ),
    (
        "cert-expiry",
        &["node", "balancer"],
        "the certificate of the node (or balancer) expires: every TLS handshake with it fails until it is renewed when the fault ends",
    ),
    (
        "latency",
        &["from", "to", "one_way", "added"],
        "traffic between two networks takes `added` longer each way (e.g. \"200ms\")",
    ),
    (
        "loss",
        &["from", "to", "one_way", "rate"],
        "each message between two networks is lost with probability `rate` (0 to 1)",
    ),
];

const COMMON: &[&str] = &["kind", "at", "for"];

/// A rolling restart's pause after a node started again: the balancers count it up after
/// `rise` checks an interval apart, and one more interval for the first of them.
pub const ROLLING_PAUSE_MS: u64 =
    (apim_topology::timing::HEALTH_RISE as u64 + 1) * apim_topology::timing::HEALTH_INTERVAL_MS;
/// After its drain, how long a stopping node has to finish what it was answering.
pub const STOP_MS: u64 = 100;
/// How long a node takes to start: measured 17–32 ms with a database to connect to (a real
/// node of `apim drill`), rounded up.
pub const STARTUP_MS: u64 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    workload: Option<toml::Spanned<RawWorkload>>,
    #[serde(default)]
    faults: Vec<toml::Spanned<RawFault>>,
}

/// A fault's keys and values with their places, so each diagnostic points at its key.
type RawFault = std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;

struct FaultTable<'a>(&'a RawFault);

impl FaultTable<'_> {
    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.0
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v.get_ref())
    }

    /// Where a key's value is written, or `or` when the key is absent.
    fn at(&self, key: &str, or: Span) -> Span {
        self.0
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map_or(or, |(_, v)| span(v.span()))
    }

    fn keys(&self) -> impl Iterator<Item = (&str, Span)> {
        self.0
            .keys()
            .map(|k| (k.get_ref().as_str(), span(k.span())))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    duration: Option<toml::Spanned<toml::Value>>,
    apis: Option<toml::Spanned<i64>>,
    applications: Option<toml::Spanned<i64>>,
    publish_rate: Option<toml::Spanned<f64>>,
    subscribe_rate: Option<toml::Spanned<f64>>,
    token_rate: Option<toml::Spanned<f64>>,
    invoke_rate: Option<toml::Spanned<f64>>,
    revoke_rate: Option<toml::Spanned<f64>>,
    lifecycle_rate: Option<toml::Spanned<f64>>,
    revocation_bound: Option<toml::Spanned<toml::Value>>,
    token_lifetime: Option<toml::Spanned<toml::Value>>,
    backend_latency: Option<toml::Spanned<toml::Value>>,
    invoke_writes: Option<toml::Spanned<f64>>,
    backend_breaks: Option<toml::Spanned<f64>>,
}

const WORKLOAD_KEYS: &[&str] = &[
    "duration",
    "apis",
    "applications",
    "publish_rate",
    "subscribe_rate",
    "token_rate",
    "invoke_rate",
    "revoke_rate",
    "lifecycle_rate",
    "revocation_bound",
    "token_lifetime",
    "backend_latency",
    "invoke_writes",
    "backend_breaks",
];

fn span(r: std::ops::Range<usize>) -> Span {
    Span::new(r.start, r.end)
}

/// `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or a whole number of seconds.
pub fn duration_ms(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(s) if *s >= 0 => Ok(*s as u64 * 1000),
        toml::Value::String(t) => parse_duration(t),
        other => Err(format!(
            "a duration is a string like \"10s\", not {}",
            other.type_str()
        )),
    }
}

/// `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or parts of them from the largest unit down
/// (`"1m30s"`, `"1h5m"`, `"2s500ms"`); a bare number is seconds.
pub fn parse_duration(t: &str) -> Result<u64, String> {
    let t = t.trim();
    if t.is_empty() {
        return Err("an empty string is not a duration".into());
    }
    if let Ok(n) = t.parse::<f64>() {
        return to_ms(n, 1_000.0, t);
    }
    let mut rest = t;
    let mut total = 0u64;
    let mut last_scale = f64::INFINITY;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("`{t}` ends without a unit (ms, s, m or h)"))?;
        let (num, after) = rest.split_at(num_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{t}` is not a duration"))?;
        let scale = match unit.trim() {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            u => return Err(format!("unknown unit `{u}` in `{t}` (use ms, s, m or h)")),
        };
        if scale >= last_scale {
            return Err(format!(
                "`{t}`: write the parts from the largest unit down, each once (e.g. \"1m30s\")"
            ));
        }
        last_scale = scale;
        total = total.saturating_add(to_ms(n, scale, t)?);
        rest = next;
    }
    if total as f64 > 1e12 {
        return Err(format!("`{t}` is out of range"));
    }
    Ok(total)
}

fn to_ms(n: f64, scale: f64, t: &str) -> Result<u64, String> {
    let ms = n * scale;
    if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
        return Err(format!("`{t}` is out of range"));
    }
    Ok(ms.round() as u64)
}

/// Formats milliseconds the way scenarios write them: `"1h"`, `"1m30s"`, `"2s500ms"`.
pub fn format_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut s = String::new();
    let mut rest = ms;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            let _ = write!(s, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    s
}

/// A probability as a percentage: `30%`, `0.5%`.
pub fn format_share(permille: u32) -> String {
    if permille.is_multiple_of(10) {
        format!("{}%", permille / 10)
    } else {
        format!("{}.{}%", permille / 10, permille % 10)
    }
}

struct Reader<'a> {
    plan: &'a Plan,
    diagnostics: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(
        &mut self,
        code: &'static apim_topology::Code,
        msg: String,
        at: Span,
        label: &str,
    ) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::new(code, msg, Label::new(at, label)));
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn duration(&mut self, v: &Option<toml::Spanned<toml::Value>>, default: u64) -> u64 {
        let Some(v) = v else {
            return default;
        };
        match duration_ms(v.get_ref()) {
            Ok(ms) => ms,
            Err(e) => {
                self.error(&codes::INVALID_VALUE, e, span(v.span()), "this duration")
                    .hint =
                    Some("write durations like \"500ms\", \"10s\", \"2m\" or \"1h\"".into());
                default
            }
        }
    }

    /// A token lifetime: whole seconds, at least one.
    fn lifetime(&mut self, v: &Option<toml::Spanned<toml::Value>>, default: u64) -> u64 {
        let ms = self.duration(v, default);
        if ms < 1000 || !ms.is_multiple_of(1000) {
            if let Some(v) = v {
                self.error(
                    &codes::INVALID_VALUE,
                    format!(
                        "a token lifetime is whole seconds, at least 1s, not {}",
                        format_ms(ms)
                    ),
                    span(v.span()),
                    "this lifetime",
                );
            }
            return default;
        }
        ms
    }

    fn count(&mut self, v: &Option<toml::Spanned<i64>>, default: usize, max: i64) -> usize {
        match v {
            None => default,
            Some(v) if (0..=max).contains(v.get_ref()) => *v.get_ref() as usize,
            Some(v) => {
                self.error(
                    &codes::INVALID_VALUE,
                    format!("{} is out of range (0 to {max})", v.get_ref()),
                    span(v.span()),
                    "this number",
                );
                default
            }
        }
    }

    fn rate(&mut self, v: &Option<toml::Spanned<f64>>, default: f64) -> f64 {
        match v {
            None => default,
            Some(v) if v.get_ref().is_finite() && (0.0..=1e7).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.error(
                    &codes::INVALID_VALUE,
                    format!(
                        "the rate {} is out of range (0 to 10,000,000 per second)",
                        v.get_ref()
                    ),
                    span(v.span()),
                    "this rate",
                );
                default
            }
        }
    }

    /// `"50ms"` (fixed), or `{ median = "20ms", p99 = "200ms" }`: (median, p99).
    fn latency(&mut self, v: &Option<toml::Spanned<toml::Value>>) -> (u64, u64) {
        let Some(spanned) = v else {
            return (0, 0);
        };
        let toml::Value::Table(t) = spanned.get_ref() else {
            let ms = self.duration(v, 0);
            return (ms, ms);
        };
        let at = span(spanned.span());
        if let Some(k) = t.keys().find(|k| !["median", "p99"].contains(&k.as_str())) {
            self.error(
                &codes::INVALID_VALUE,
                format!("`{k}` is not a key of a latency distribution (median, p99)"),
                at,
                "this latency",
            );
            return (0, 0);
        }
        let mut part = |key: &str| match t.get(key).map(duration_ms) {
            Some(Ok(ms)) => Some(ms),
            Some(Err(e)) => {
                self.error(
                    &codes::INVALID_VALUE,
                    format!("{key}: {e}"),
                    at,
                    "this latency",
                );
                None
            }
            None => {
                self.error(
                    &codes::INVALID_VALUE,
                    format!("a latency distribution needs `{key}`"),
                    at,
                    "this latency",
                );
                None
            }
        };
        let (Some(median), Some(p99)) = (part("median"), part("p99")) else {
            return (0, 0);
        };
        if p99 < median {
            self.error(
                &codes::INVALID_VALUE,
                format!(
                    "p99 ({}) is below the median ({})",
                    format_ms(p99),
                    format_ms(median)
                ),
                at,
                "this latency",
            );
            return (median, median);
        }
        (median, p99)
    }

    fn workload(&mut self, raw: &RawWorkload) -> Workload {
        let d = Workload::default();
        let latency = self.latency(&raw.backend_latency);
        Workload {
            duration_ms: self.duration(&raw.duration, d.duration_ms),
            apis: self.count(&raw.apis, d.apis, 1000),
            applications: self.count(&raw.applications, d.applications, 10_000),
            publish_rate: self.rate(&raw.publish_rate, d.publish_rate),
            subscribe_rate: self.rate(&raw.subscribe_rate, d.subscribe_rate),
            token_rate: self.rate(&raw.token_rate, d.token_rate),
            invoke_rate: self.rate(&raw.invoke_rate, d.invoke_rate),
            revoke_rate: self.rate(&raw.revoke_rate, d.revoke_rate),
            lifecycle_rate: self.rate(&raw.lifecycle_rate, d.lifecycle_rate),
            revocation_bound_ms: self.duration(&raw.revocation_bound, d.revocation_bound_ms),
            token_lifetime_ms: self.lifetime(&raw.token_lifetime, d.token_lifetime_ms),
            backend_latency_ms: latency.0,
            backend_latency_p99_ms: latency.1,
            invoke_writes: self.share(&raw.invoke_writes, d.invoke_writes),
            backend_breaks: self.share(&raw.backend_breaks, d.backend_breaks),
        }
    }

    fn share(&mut self, v: &Option<toml::Spanned<f64>>, default: f64) -> f64 {
        match v {
            None => default,
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.error(
                    &codes::INVALID_VALUE,
                    format!("the share {} is out of range (0 to 1)", v.get_ref()),
                    span(v.span()),
                    "this share",
                );
                default
            }
        }
    }

    /// A string key naming something of the topology.
    fn reference(
        &mut self,
        table: &FaultTable,
        whole: Span,
        key: &str,
        what: &str,
        known: &BTreeSet<&str>,
    ) -> Option<String> {
        let Some(v) = table.get(key) else {
            self.error(
                &codes::MISSING_FIELD,
                format!("this fault needs `{key}`: the {what} it applies to"),
                whole,
                "in this fault",
            );
            return None;
        };
        let Some(name) = v.as_str() else {
            self.error(
                &codes::INVALID_SCENARIO,
                format!("`{key}` is a string (a {what} name), not {}", v.type_str()),
                table.at(key, whole),
                "this value",
            );
            return None;
        };
        if known.contains(name) {
            return Some(name.to_string());
        }
        let hint = match apim_topology::suggest::closest(name, known.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!(
                "the topology's {what}s: {}",
                known.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        };
        self.error(
            &codes::UNKNOWN_REFERENCE,
            format!("no {what} `{name}` in the topology"),
            table.at(key, whole),
            "not in the topology",
        )
        .hint = Some(hint);
        None
    }

    fn fault(&mut self, f: &toml::Spanned<RawFault>, end_ms: u64) -> Option<Fault> {
        let whole = span(f.span());
        let t = &FaultTable(f.get_ref());
        let Some(kind) = t.get("kind").and_then(|k| k.as_str()) else {
            self.error(
                &codes::MISSING_FIELD,
                "this fault needs `kind`".into(),
                whole,
                "in this fault",
            )
            .hint = Some(format!("one of: {}", kinds().join(", ")));
            return None;
        };
        let Some((_, keys, _)) = FAULT_KINDS.iter().find(|(k, _, _)| *k == kind) else {
            let hint = match apim_topology::suggest::closest(kind, kinds()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("one of: {}", kinds().join(", ")),
            };
            self.error(
                &codes::INVALID_VALUE,
                format!("unknown fault kind `{kind}`"),
                t.at("kind", whole),
                "this kind",
            )
            .hint = Some(hint);
            return None;
        };
        let mut ok = true;
        for (key, key_span) in t.keys() {
            if !COMMON.contains(&key) && !keys.contains(&key) {
                let allowed: Vec<&str> = COMMON.iter().chain(keys.iter()).copied().collect();
                let hint = match apim_topology::suggest::closest(key, allowed.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("a {kind} fault takes: {}", allowed.join(", ")),
                };
                self.error(
                    &codes::INVALID_SCENARIO,
                    format!("unknown key `{key}` for a {kind} fault"),
                    key_span,
                    "unknown key",
                )
                .hint = Some(hint);
                ok = false;
            }
        }
        let time = |r: &mut Reader, key: &str| -> Option<Option<u64>> {
            match t.get(key) {
                None => Some(None),
                Some(v) => match duration_ms(v) {
                    Ok(ms) => Some(Some(ms)),
                    Err(e) => {
                        r.error(
                            &codes::INVALID_VALUE,
                            format!("`{key}`: {e}"),
                            t.at(key, whole),
                            "this duration",
                        )
                        .hint = Some(
                            "write durations like \"500ms\", \"10s\", \"2m\" or \"1h\"".into(),
                        );
                        None
                    }
                },
            }
        };
        let at_ms = time(self, "at")?.unwrap_or(0);
        let for_ms = time(self, "for")?;
        if at_ms >= end_ms {
            self.error(
                &codes::INVALID_VALUE,
                format!(
                    "the fault starts at {} but the run ends at {}",
                    format_ms(at_ms),
                    format_ms(end_ms)
                ),
                t.at("at", whole),
                "after the end",
            );
            ok = false;
        }
        let plan = self.plan;
        let nodes: BTreeSet<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        let clusters: BTreeSet<&str> = plan.nodes.iter().map(|n| n.cluster.as_str()).collect();
        let networks: BTreeSet<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
        let databases: BTreeSet<&str> = plan.databases.iter().map(|d| d.name.as_str()).collect();
        let balancers: BTreeSet<&str> = plan.balancers.iter().map(|b| b.name.as_str()).collect();
        let one_way = t.get("one_way").and_then(|v| v.as_bool()).unwrap_or(false);
        let kind = match kind {
            "crash" => FaultKind::Crash {
                node: self.reference(t, whole, "node", "node", &nodes)?,
            },
            "isolate" => FaultKind::Isolate {
                node: self.reference(t, whole, "node", "node", &nodes)?,
            },
            "cluster-down" => FaultKind::ClusterDown {
                cluster: self.reference(t, whole, "cluster", "cluster", &clusters)?,
            },
            "database-outage" => FaultKind::DatabaseOutage {
                database: self.reference(t, whole, "database", "database", &databases)?,
            },
            "database-blackhole" => FaultKind::DatabaseBlackhole {
                database: self.reference(t, whole, "database", "database", &databases)?,
            },
            "balancer-outage" => FaultKind::BalancerOutage {
                balancer: self.reference(t, whole, "balancer", "balancer", &balancers)?,
            },
            "rolling-restart" => {
                let cluster = self.reference(t, whole, "cluster", "cluster", &clusters)?;
                let drain_ms = time(self, "drain")?.unwrap_or(apim_topology::timing::DRAIN_MS);
                let pause_ms = time(self, "pause")?.unwrap_or(ROLLING_PAUSE_MS);
                if for_ms.is_some() {
                    self.error(
                        &codes::INVALID_SCENARIO,
                        "a rolling restart lasts as long as its nodes take; it takes no `for`"
                            .into(),
                        t.at("for", whole),
                        "remove this",
                    );
                    return None;
                }
                FaultKind::RollingRestart {
                    cluster,
                    drain_ms,
                    pause_ms,
                }
            }
            "cert-expiry" if t.get("balancer").is_some() => FaultKind::CertExpiry {
                name: self.reference(t, whole, "balancer", "balancer", &balancers)?,
                balancer: true,
            },
            "cert-expiry" => FaultKind::CertExpiry {
                name: self.reference(t, whole, "node", "node", &nodes)?,
                balancer: false,
            },
            _ => {
                let from = self.reference(t, whole, "from", "network", &networks);
                let to = self.reference(t, whole, "to", "network", &networks);
                let (from, to) = (from?, to?);
                match kind {
                    "partition" => FaultKind::Partition { from, to, one_way },
                    "latency" => {
                        let added = match t.get("added") {
                            Some(v) => match duration_ms(v) {
                                Ok(ms) => ms,
                                Err(e) => {
                                    self.error(
                                        &codes::INVALID_VALUE,
                                        format!("`added`: {e}"),
                                        t.at("added", whole),
                                        "this duration",
                                    );
                                    return None;
                                }
                            },
                            None => {
                                self.error(
                                    &codes::MISSING_FIELD,
                                    "a latency fault needs `added`, such as \"200ms\"".into(),
                                    whole,
                                    "in this fault",
                                );
                                return None;
                            }
                        };
                        FaultKind::Latency {
                            from,
                            to,
                            one_way,
                            added_ms: added,
                        }
                    }
                    _ => {
                        let rate = match t
                            .get("rate")
                            .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
                        {
                            Some(r) if (0.0..=1.0).contains(&r) => r,
                            _ => {
                                self.error(
                                    &codes::INVALID_VALUE,
                                    "a loss fault needs `rate`, a number from 0 to 1".into(),
                                    t.at("rate", whole),
                                    "here",
                                );
                                return None;
                            }
                        };
                        FaultKind::Loss {
                            from,
                            to,
                            one_way,
                            rate_permille: (rate * 1000.0).round() as u32,
                        }
                    }
                }
            }
        };
        let for_ms = match &kind {
            FaultKind::RollingRestart {
                cluster,
                drain_ms,
                pause_ms,
            } => {
                let nodes = plan.nodes.iter().filter(|n| &n.cluster == cluster).count();
                Some(nodes as u64 * (drain_ms + STOP_MS + STARTUP_MS + pause_ms))
            }
            _ => for_ms,
        };
        ok.then_some(Fault {
            at_ms,
            for_ms,
            kind,
        })
    }
}

fn kinds() -> Vec<&'static str> {
    FAULT_KINDS.iter().map(|(k, _, _)| *k).collect()
}

/// Reads a scenario for a plan; every problem is a diagnostic.
pub fn parse(source: &SourceFile, plan: &Plan) -> Result<Scenario, Vec<Diagnostic>> {
    let raw: RawScenario = match toml::from_str(&source.text) {
        Ok(r) => r,
        Err(e) => {
            let at = e.span().map_or(Span::new(0, 0), span);
            let message = e.message().to_string();
            let mut d = Diagnostic::new(
                &codes::INVALID_SCENARIO,
                message.clone(),
                Label::new(at, "here"),
            );
            if let Some(unknown) = message.split('`').nth(1) {
                let candidates = WORKLOAD_KEYS
                    .iter()
                    .chain(["workload", "faults"].iter())
                    .copied();
                if let Some(c) = apim_topology::suggest::closest(unknown, candidates) {
                    d = d.with_hint(format!("did you mean `{c}`?"));
                }
            }
            return Err(vec![d]);
        }
    };
    let mut r = Reader {
        plan,
        diagnostics: Vec::new(),
    };
    let workload = raw
        .workload
        .as_ref()
        .map_or_else(Workload::default, |w| r.workload(w.get_ref()));
    if workload.duration_ms == 0 {
        let at = raw
            .workload
            .as_ref()
            .map_or(Span::new(0, 0), |w| span(w.span()));
        r.error(
            &codes::INVALID_VALUE,
            "the run must last longer than 0s".into(),
            at,
            "this workload",
        );
    }
    let mut faults = Vec::new();
    for f in &raw.faults {
        if let Some(f) = r.fault(f, workload.duration_ms) {
            faults.push(f);
        }
    }
    if r.diagnostics.is_empty() {
        faults.sort();
        Ok(Scenario { workload, faults })
    } else {
        apim_topology::diagnostic::sort(&mut r.diagnostics);
        Err(r.diagnostics)
    }
}

impl Scenario {
    /// The scenario as a file `parse` reads back.
    pub fn to_toml(&self) -> String {
        let w = &self.workload;
        let mut s = String::from("[workload]\n");
        let _ = writeln!(s, "duration = \"{}\"", format_ms(w.duration_ms));
        let _ = writeln!(s, "apis = {}", w.apis);
        let _ = writeln!(s, "applications = {}", w.applications);
        for (k, v) in [
            ("publish_rate", w.publish_rate),
            ("subscribe_rate", w.subscribe_rate),
            ("token_rate", w.token_rate),
            ("invoke_rate", w.invoke_rate),
            ("revoke_rate", w.revoke_rate),
            ("lifecycle_rate", w.lifecycle_rate),
        ] {
            let _ = writeln!(s, "{k} = {v:?}");
        }
        let _ = writeln!(
            s,
            "revocation_bound = \"{}\"",
            format_ms(w.revocation_bound_ms)
        );
        let _ = writeln!(s, "token_lifetime = \"{}\"", format_ms(w.token_lifetime_ms));
        if w.backend_varies() {
            let _ = writeln!(
                s,
                "backend_latency = {{ median = \"{}\", p99 = \"{}\" }}",
                format_ms(w.backend_latency_ms),
                format_ms(w.backend_latency_p99_ms)
            );
        } else if w.backend_latency_ms > 0 {
            let _ = writeln!(
                s,
                "backend_latency = \"{}\"",
                format_ms(w.backend_latency_ms)
            );
        }
        if w.invoke_writes > 0.0 {
            let _ = writeln!(s, "invoke_writes = {:?}", w.invoke_writes);
        }
        if w.backend_breaks > 0.0 {
            let _ = writeln!(s, "backend_breaks = {:?}", w.backend_breaks);
        }
        for f in &self.faults {
            s.push_str("\n[[faults]]\n");
            let _ = writeln!(s, "kind = \"{}\"", f.kind.name());
            let _ = writeln!(s, "at = \"{}\"", format_ms(f.at_ms));
            if let Some(d) = f.for_ms.filter(|_| f.kind.name() != "rolling-restart") {
                let _ = writeln!(s, "for = \"{}\"", format_ms(d));
            }
            for (k, v) in f.kind.fields() {
                let _ = writeln!(s, "{k} = {v}");
            }
        }
        s
    }
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Crash { .. } => "crash",
            FaultKind::ClusterDown { .. } => "cluster-down",
            FaultKind::Partition { .. } => "partition",
            FaultKind::Isolate { .. } => "isolate",
            FaultKind::DatabaseOutage { .. } => "database-outage",
            FaultKind::DatabaseBlackhole { .. } => "database-blackhole",
            FaultKind::BalancerOutage { .. } => "balancer-outage",
            FaultKind::RollingRestart { .. } => "rolling-restart",
            FaultKind::CertExpiry { .. } => "cert-expiry",
            FaultKind::Latency { .. } => "latency",
            FaultKind::Loss { .. } => "loss",
        }
    }

    /// The kind's own keys, as TOML values.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let q = |s: &str| format!("{s:?}");
        match self {
            FaultKind::Crash { node } | FaultKind::Isolate { node } => vec![("node", q(node))],
            FaultKind::ClusterDown { cluster } => vec![("cluster", q(cluster))],
            FaultKind::DatabaseOutage { database } | FaultKind::DatabaseBlackhole { database } => {
                vec![("database", q(database))]
            }
            FaultKind::BalancerOutage { balancer } => vec![("balancer", q(balancer))],
            FaultKind::RollingRestart {
                cluster,
                drain_ms,
                pause_ms,
            } => vec![
                ("cluster", q(cluster)),
                ("drain", q(&format_ms(*drain_ms))),
                ("pause", q(&format_ms(*pause_ms))),
            ],
            FaultKind::CertExpiry { name, balancer } => {
                vec![(if *balancer { "balancer" } else { "node" }, q(name))]
            }
            FaultKind::Partition { from, to, one_way } => {
                vec![
                    ("from", q(from)),
                    ("to", q(to)),
                    ("one_way", one_way.to_string()),
                ]
            }
            FaultKind::Latency {
                from,
                to,
                one_way,
                added_ms,
            } => vec![
                ("from", q(from)),
                ("to", q(to)),
                ("one_way", one_way.to_string()),
                ("added", q(&format_ms(*added_ms))),
            ],
            FaultKind::Loss {
                from,
                to,
                one_way,
                rate_permille,
            } => vec![
                ("from", q(from)),
                ("to", q(to)),
                ("one_way", one_way.to_string()),
                ("rate", format!("{:?}", f64::from(*rate_permille) / 1000.0)),
            ],
        }
    }

    /// A short description, such as `crash gateway-1`.
    pub fn describe(&self) -> String {
        let arrow = |one_way: &bool| if *one_way { "->" } else { "<->" };
        match self {
            FaultKind::Crash { node } => format!("crash {node}"),
            FaultKind::ClusterDown { cluster } => format!("cluster-down {cluster}"),
            FaultKind::Isolate { node } => format!("isolate {node}"),
            FaultKind::DatabaseOutage { database } => format!("database-outage {database}"),
            FaultKind::DatabaseBlackhole { database } => format!("database-blackhole {database}"),
            FaultKind::BalancerOutage { balancer } => format!("balancer-outage {balancer}"),
            FaultKind::RollingRestart { cluster, .. } => format!("rolling-restart {cluster}"),
            FaultKind::CertExpiry { name, .. } => format!("cert-expiry {name}"),
            FaultKind::Partition { from, to, one_way } => {
                format!("partition {from} {} {to}", arrow(one_way))
            }
            FaultKind::Latency {
                from,
                to,
                one_way,
                added_ms,
            } => {
                format!(
                    "latency +{} {from} {} {to}",
                    format_ms(*added_ms),
                    arrow(one_way)
                )
            }
            FaultKind::Loss {
                from,
                to,
                one_way,
                rate_permille,
            } => {
                format!(
                    "loss {} {from} {} {to}",
                    format_share(*rate_permille),
                    arrow(one_way)
                )
            }
        }
    }
}

impl Fault {
    pub fn describe(&self) -> String {
        let until = self
            .for_ms
            .map_or_else(|| "the end".to_string(), |d| format_ms(self.at_ms + d));
        format!(
            "{} from {} to {until}",
            self.kind.describe(),
            format_ms(self.at_ms)
        )
    }
}
