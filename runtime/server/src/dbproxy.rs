//! A TCP relay in front of a database server that a drill can make refuse or swallow: a
//! scenario's `database-outage` and `database-blackhole`, made for real without touching the
//! server, and only for the connections of the deployment being drilled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the relay does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Passes bytes both ways.
    Pass = 0,
    /// Closes every connection, new and open, at once: a server down.
    Refuse = 1,
    /// Accepts and reads, never answers: a server unreachable (packets dropped).
    Blackhole = 2,
    /// Passes bytes, each read `SLOW_BY` late: a server far away or overloaded.
    Slow = 3,
}

/// How late a slow relay passes each read.
pub const SLOW_BY: std::time::Duration = std::time::Duration::from_millis(100);

/// A relay listening on `addr`; it stops when dropped, cutting what it relays.
pub struct DbProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

impl DbProxy {
    /// Listens on `bind` (an `ip:port`) and relays each connection to `upstream`.
    pub async fn start(bind: &str, upstream: String) -> Result<DbProxy, String> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            // Dropped with the accept loop: no relay outlives the proxy.
            let mut relays = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while relays.try_join_next().is_some() {}
                let (m, upstream) = (m.clone(), upstream.clone());
                relays.spawn(async move {
                    if m.load(Ordering::SeqCst) == Mode::Refuse as u8 {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    relay(client, server, m).await;
                });
            }
        });
        Ok(DbProxy { addr, mode, task })
    }

    pub fn set(&self, mode: Mode) {
        self.handle().set(mode);
    }

    /// A handle that sets the mode, for a task that outlives this borrow.
    pub fn handle(&self) -> Switch {
        Switch(self.mode.clone())
    }
}

/// Sets a relay's mode.
#[derive(Clone, Debug)]
pub struct Switch(Arc<AtomicU8>);

impl Switch {
    pub fn set(&self, mode: Mode) {
        self.0.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways while the mode passes; refusing closes, a blackhole keeps reading.
async fn relay(client: TcpStream, server: TcpStream, mode: Arc<AtomicU8>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        () = pump(cr, sw, mode.clone()) => {}
        () = pump(sr, cw, mode.clone()) => {}
        () = refused(mode) => {}
    }
}

/// Returns once the relay is told to refuse: open connections are cut at once, as a server
/// that went down cuts them, not at their next read.
async fn refused(mode: Arc<AtomicU8>) {
    while mode.load(Ordering::SeqCst) != Mode::Refuse as u8 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mode = mode.load(Ordering::SeqCst);
        if mode == Mode::Slow as u8 {
            tokio::time::sleep(SLOW_BY).await;
        }
        match mode {
            m if m == Mode::Pass as u8 || m == Mode::Slow as u8 => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            m if m == Mode::Blackhole as u8 => {}
            _ => return,
        }
    }
}
