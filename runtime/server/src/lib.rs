//! apim-runtime: the real world — HTTP servers and clients (tokio, hyper), databases (sqlx) —
//! and the supervisors of `apim up` (a whole topology on loopback) and `apim node` (one node).
//!
//! Components come from apim-components; this crate only moves bytes between them and the
//! outside, and decides where things run.

pub mod backend;
pub mod balancer;
pub mod databases;
pub mod dbproxy;
pub mod guarded;
pub mod http;
pub mod node;
pub mod signing;
pub mod smoke;
pub mod storage;
pub mod tls;
pub mod up;
pub mod upstream;
pub mod world;

/// Runs a future on a multi-threaded tokio runtime; for the command line, which has none.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    raise_open_files();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    Ok(rt.block_on(f))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn until_interrupted() {
    let _ = until_signal().await;
}

/// How a process was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C (SIGINT): someone at a terminal, who wants it gone now.
    Interrupt,
    /// SIGTERM: a supervisor (Kubernetes, systemd, a rolling restart) that expects a drain.
    Terminate,
}

/// Waits for SIGINT or SIGTERM.
pub async fn until_signal() -> Signal {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return Signal::Interrupt;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}

/// Fills `buf` from the OS random source.
pub fn random(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| e.to_string())
}

/// Raises the soft limit of open files to the hard one: every connection is a descriptor, and
/// the listeners' own limits (`http::MAX_CONNECTIONS`) should be what stops a flood, not the
/// process's default of 1,024. Returns the limit in force.
pub fn raise_open_files() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
