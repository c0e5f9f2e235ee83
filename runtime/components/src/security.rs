//! The security log: lockouts, throttling, refused backends, refused connections and refused
//! internal callers, as structured `tracing` events under the target `apim::security` (the
//! binary prints them, as JSON on request). Never a secret: names of what was refused and
//! why, never a password, token or cookie. Rate-limited by count, so a flood cannot flood the
//! log: the first `FIRST` events of a kind, then one in `EVERY`, each saying how many it
//! stands for.

use std::collections::BTreeMap;
use std::sync::Mutex;

pub const TARGET: &str = "apim::security";
/// Events of one kind logged one by one...
pub const FIRST: u64 = 20;
/// ...then one in this many.
pub const EVERY: u64 = 1_000;

static SEEN: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Logs a security event of `kind` with its fields (values are cut to 200 characters).
pub fn event(kind: &'static str, fields: &[(&str, &str)]) {
    let n = {
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let n = seen.entry(kind).or_default();
        *n += 1;
        *n
    };
    if n > FIRST && !(n - FIRST).is_multiple_of(EVERY) {
        return;
    }
    let stands_for = if n > FIRST { EVERY } else { 1 };
    let detail = fields
        .iter()
        .map(|(k, v)| {
            let v: String = v.chars().take(200).collect();
            format!("{k}={v:?}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    tracing::warn!(target: TARGET, event = kind, count = stands_for, "{detail}");
}
