//! Every period, bound and window of a running deployment, in one place, with the relations
//! between them checked when apim is compiled. The compiler writes the deployment-wide ones
//! into plans (a topology may override some: `[deployment] revocation_bound_ms`,
//! `session_hours`, `database_timeout_ms`); the components and both worlds read the rest.
//!
//! All in milliseconds.

// ---- Balancers' health checks and a node's stop ----

/// A balancer asks each node's `/ready` this often, and waits this long for the answer...
pub const HEALTH_INTERVAL_MS: u64 = 2_000;
pub const HEALTH_TIMEOUT_MS: u64 = 1_000;
/// ...and marks it down after this many failed checks in a row, up after this many passed.
pub const HEALTH_FALL: u32 = 3;
pub const HEALTH_RISE: u32 = 2;
/// The shortest check interval and timeout a balancer uses, whatever its rules say: a check
/// every few microseconds would be a flood of its own.
pub const MIN_CHECK_MS: u64 = 100;
/// How long a stopping node stays up, unready and still serving, before it stops accepting:
/// long enough for every balancer's checks to take it out (`fall` failed checks, `interval`
/// apart, the first up to an interval away), and one interval more for checks that run late
/// on a busy host — a balancer still sending to a node that has stopped accepting loses the
/// writes it sends there.
pub const DRAIN_MS: u64 = (HEALTH_FALL as u64 + 1) * HEALTH_INTERVAL_MS + HEALTH_TIMEOUT_MS;
/// Then the requests in flight get this long to finish.
pub const GRACE_MS: u64 = 10_000;

// ---- Connections ----

/// Connecting to a node or a backend, through a balancer or directly.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// A balancer waits this long for an upstream's answer.
pub const READ_TIMEOUT_MS: u64 = 60_000;
/// The bound on one call between components (connecting, sending, the whole answer), in both
/// worlds.
pub const CALL_TIMEOUT_MS: u64 = 10_000;
/// The bound on one notification to each node of a cluster (an API published, a token revoked,
/// a subscription made): a node that has not taken it by then missed it and catches up by
/// itself. As short as a connect: a kept connection to a node that vanished without a word
/// would otherwise hold a publication for the whole call bound.
pub const NOTIFY_EACH_MS: u64 = CONNECT_TIMEOUT_MS;
/// The bound on a gateway's call to an API's backend.
pub const BACKEND_TIMEOUT_MS: u64 = 30_000;
/// How long a client may take over its TLS handshake: a few seconds, so that connections
/// that never start one give their place back soon.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 4_000;
/// How long a connection may take to send a request's head, and how long a kept-alive one may
/// sit idle: past it the connection is closed, so slow or idle clients cannot pile up.
pub const HEAD_TIMEOUT_MS: u64 = 30_000;
/// How long a part of a request body may take to arrive, and the whole body: a client
/// trickling its body cannot hold a connection and its buffer.
pub const BODY_IDLE_MS: u64 = 10_000;
pub const BODY_TOTAL_MS: u64 = 60_000;
/// How long a refused request's unread body is drained before its connection is closed.
pub const LINGER_MS: u64 = 5_000;
/// A pooled connection to an upstream idle this long is closed rather than reused: upstreams
/// close theirs too, and a request must not race that. Shorter than apim's own listeners keep
/// an idle connection, so calls between apim nodes never do.
pub const UPSTREAM_IDLE_MS: u64 = 20_000;
/// How long a passed-through (L4) connection may stay silent both ways before it is closed.
pub const PASS_IDLE_MS: u64 = 60_000;

// ---- Databases ----

/// A database operation may take this long unless `[deployment] database_timeout_ms` says
/// otherwise (the breaker counts one that takes longer as failed).
pub const DATABASE_MS: u64 = 2_000;
/// Consecutive failures that open a database's breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// While a database's breaker is open, each node asks it `SELECT 1` this often (one at a time),
/// and the first answer closes the breaker: a database's return is seen within one period and
/// one probe bound, wherever the node's timers stood (a probe is four tiny requests a second per
/// node at most, and only while the database looks down).
pub const PROBE_EVERY_MS: u64 = 250;
/// A probe's bound: a probe sent just before a database that was not answering came back must
/// not keep its breaker open for a whole operation's bound (`SELECT 1` takes a millisecond).
pub const PROBE_BOUND_MS: u64 = 500;

// ---- Tokens and revocation ----

/// Access tokens live an hour unless a scenario says otherwise.
pub const TOKEN_MS: u64 = 3_600_000;
/// A revoked token works at most this long on a gateway that missed its notification, unless
/// `[deployment] revocation_bound_ms` says otherwise.
pub const REVOCATION_BOUND_MS: u64 = 1_000;
/// How often a gateway asks the key manager for revocations it may have missed, counted from
/// one ask to the next.
pub const REVOCATIONS_MS: u64 = 500;
/// The bound on the read behind that catch-up (shorter than any database timeout).
pub const CATCH_UP_MS: u64 = 250;
/// A key manager's reads of the revocations for the gateways' catch-ups start at least this far
/// apart: every catch-up that arrives meanwhile waits for the next read (`feed.rs`), so the
/// database sees a bounded number of reads a second whatever the number of gateways.
pub const FEED_EVERY_MS: u64 = 50;
/// Asked-for windows overlap by this much, so clocks a little apart lose nothing.
pub const REVOCATIONS_OVERLAP_MS: u64 = 5_000;
/// How far before the revocation bound a gateway stops trusting its revocation list: one
/// catch-up period and the slowest answer it waits for fit in it.
pub const TRUST_MARGIN_MS: u64 = 200;
/// How long after the last revocation catch-up the cache is trusted with the default bound
/// (`Tokens::trust_ms`). Past it (the key manager out of reach), every token is checked with
/// the key manager again under the strict policy.
pub const CACHE_TRUST_MS: u64 = REVOCATION_BOUND_MS - TRUST_MARGIN_MS;
/// How long a validation is trusted without asking the key manager again; never past the
/// token's own expiry.
pub const CACHE_MS: u64 = 30_000;
/// An unknown key id makes a gateway ask the key manager for its keys at most this often.
pub const JWKS_ASK_MS: u64 = 1_000;

// ---- A node's background loops ----

/// How often a gateway reconciles its routing table and subscriptions with the registry...
pub const RECONCILE_MS: u64 = 5_000;
/// ...and until its first read succeeds, this often: it is not ready before, so a restart
/// should not wait a whole reconcile period for it.
pub const FIRST_READ_RETRY_MS: u64 = 250;
/// How often a node deletes ended sessions, expired tokens and old failed attempts.
pub const PURGE_MS: u64 = 10 * 60 * 1000;
/// How long a subscription waits for the gateways to be told of it.
pub const NOTIFY_MS: u64 = 1_000;

// ---- Portals ----

/// Portal sessions last this long unless `[deployment] session_hours` says otherwise.
pub const SESSION_HOURS: u32 = 8;
pub const SESSION_MS: u64 = SESSION_HOURS as u64 * 3_600_000;
/// Failed sign-in attempts are counted in windows of this length.
pub const FAILURE_WINDOW_MS: u64 = 15 * 60 * 1000;

// ---- How they relate ----

const _: () = assert!(
    REVOCATIONS_MS + CATCH_UP_MS < CACHE_TRUST_MS,
    "a catch-up must be answered within the cache's trust window"
);
const _: () = assert!(
    CACHE_TRUST_MS + TRUST_MARGIN_MS <= REVOCATION_BOUND_MS,
    "the trust window ends before the revocation bound"
);
const _: () = assert!(
    CATCH_UP_MS < DATABASE_MS,
    "the catch-up's bound is the shorter"
);
const _: () = assert!(
    FEED_EVERY_MS < CATCH_UP_MS,
    "a catch-up that waits for the next read of the revocations still has time for the read"
);
const _: () = assert!(
    PROBE_BOUND_MS < DATABASE_MS,
    "a probe waits less than an operation"
);
const _: () = assert!(
    FIRST_READ_RETRY_MS < RECONCILE_MS,
    "a gateway that has not read the registry asks sooner than one that has"
);
const _: () = assert!(
    HEALTH_TIMEOUT_MS <= HEALTH_INTERVAL_MS && MIN_CHECK_MS <= HEALTH_TIMEOUT_MS,
    "a check ends before the next one starts"
);
const _: () = assert!(
    UPSTREAM_IDLE_MS < HEAD_TIMEOUT_MS,
    "a pooled connection is dropped before the listener at the other end drops it"
);
const _: () = assert!(
    CONNECT_TIMEOUT_MS < CALL_TIMEOUT_MS && CALL_TIMEOUT_MS < BACKEND_TIMEOUT_MS,
    "a connection is given up on before the call it is for"
);
const _: () = assert!(
    NOTIFY_EACH_MS <= CALL_TIMEOUT_MS,
    "a notification is bounded by no more than a call"
);
const _: () = assert!(
    NOTIFY_MS <= CALL_TIMEOUT_MS,
    "a subscription does not wait longer than one call for the gateways"
);
const _: () = assert!(JWKS_ASK_MS <= CACHE_MS && TRUST_MARGIN_MS < REVOCATION_BOUND_MS);
const _: () = assert!(
    FAILURE_WINDOW_MS <= PURGE_MS * 2,
    "old failed attempts are purged soon after their window"
);
