//! A key manager's reads of the revoked tokens, shared by every gateway that asked: catch-ups
//! that arrive while a read is under way wait for the next one, which starts after they
//! arrived (so an answer holds every revocation acknowledged before the gateway asked, as a
//! read of its own would), and reads start at least `FEED_EVERY_MS` apart. A fleet's catch-ups
//! cost each key manager's database a bounded number of reads a second, whatever the number
//! of gateways; with no gateway asking, none.
//!
//! One of the waiting callers does the read (no loop of its own: nothing runs while no one
//! asks); if that caller goes away mid-read, another one takes over.

use crate::world::{DbError, Storage, World};
use apim_topology::timing::FEED_EVERY_MS;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// What one read found: the tokens revoked since the time it asked from, as (hash, when), or
/// why it could not be read.
type Read = Result<Arc<Vec<(String, u64)>>, DbError>;

#[derive(Default)]
pub struct Feed {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Reads completed.
    done: u64,
    /// A caller has taken the next read on (it may still be waiting for its start).
    reader: bool,
    /// The read under way started: callers from now on need the one after it.
    reading: bool,
    /// The earliest time the callers waiting for the next read to start asked from.
    wanted_since: Option<u64>,
    /// When the last read started.
    last_start_ms: Option<u64>,
    /// The last reads, by number, each with the time it asked from: kept a little while for
    /// callers that are polled late.
    reads: BTreeMap<u64, (u64, Read)>,
    /// Callers waiting for a read, or for the reader's place.
    waiting: Vec<Waker>,
    /// Reads made since the node started.
    count: u64,
}

/// Reads kept for callers polled late.
const KEPT: u64 = 8;

impl Feed {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is a few field updates: usable even after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hashes of the tokens revoked at or after `since_ms`, from a read that starts after
    /// this call. Unbounded: the caller bounds the wait.
    pub async fn revoked_since(
        &self,
        world: &impl World,
        since_ms: u64,
    ) -> Result<Vec<String>, DbError> {
        let target = {
            let mut s = self.state();
            s.wanted_since = Some(s.wanted_since.map_or(since_ms, |w| w.min(since_ms)));
            // A read under way may have started before this call: the one after it.
            s.done + 1 + u64::from(s.reading)
        };
        loop {
            let done = Turn { feed: self, target }.await;
            if done {
                break;
            }
            self.read(world).await;
        }
        let read = {
            let s = self.state();
            match s.reads.get(&target) {
                Some((_, read)) => read.clone(),
                // Polled so late that its read was forgotten: any later one that asked from
                // no later than this caller did is as good.
                None => s
                    .reads
                    .range(target..)
                    .find(|(_, (from, _))| *from <= since_ms)
                    .map_or_else(
                        || Err(DbError::unavailable("the revocation feed moved on")),
                        |(_, (_, read))| read.clone(),
                    ),
            }
        };
        // The read may have asked from earlier, for another caller: only what this one asked.
        Ok(read?
            .iter()
            .filter(|(_, at)| *at >= since_ms)
            .map(|(hash, _)| hash.clone())
            .collect())
    }

    /// The read this caller took on: no sooner than `FEED_EVERY_MS` after the last one started,
    /// for every caller waiting when it starts.
    async fn read(&self, world: &impl World) {
        let mut taken = Taken {
            feed: self,
            since: None,
            done: false,
        };
        let not_before = self.state().last_start_ms.map(|t| t + FEED_EVERY_MS);
        if let Some(at) = not_before {
            let now = world.now_ms();
            if now < at {
                world.sleep(at - now).await;
            }
        }
        let since = {
            let mut s = self.state();
            s.reading = true;
            s.last_start_ms = Some(world.now_ms());
            s.wanted_since.take().unwrap_or_default()
        };
        taken.since = Some(since);
        let found = world.storage().revoked_since(since).await.map(Arc::new);
        taken.done = true;
        let mut s = self.state();
        s.reader = false;
        s.reading = false;
        s.done += 1;
        s.count += 1;
        let n = s.done;
        s.reads.insert(n, (since, found));
        while s.reads.len() as u64 > KEPT {
            s.reads.pop_first();
        }
        wake_all(&mut s);
    }

    /// Reads made since the node started.
    pub fn reads(&self) -> u64 {
        self.state().count
    }
}

fn wake_all(s: &mut State) {
    for w in s.waiting.drain(..) {
        w.wake();
    }
}

/// The reader's place, given back if its caller goes away before the read is done: the time
/// it was to read from goes back to the waiting callers, one of whom takes the place.
struct Taken<'a> {
    feed: &'a Feed,
    /// The time it reads from, once its read started.
    since: Option<u64>,
    done: bool,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.feed.state();
        if let Some(since) = self.since {
            s.wanted_since = Some(s.wanted_since.map_or(since, |w| w.min(since)));
        }
        s.reader = false;
        s.reading = false;
        wake_all(&mut s);
    }
}

/// `true` once read `target` has completed; `false` when this caller is to read (no one else
/// does, and a caller waits).
struct Turn<'a> {
    feed: &'a Feed,
    target: u64,
}

impl Future for Turn<'_> {
    type Output = bool;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.feed.state();
        if s.done >= self.target {
            return Poll::Ready(true);
        }
        if !s.reader && s.wanted_since.is_some() {
            s.reader = true;
            return Poll::Ready(false);
        }
        if !s.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Request, Response};
    use crate::mem::MemStorage;
    use crate::tokens::Tokens;
    use crate::world::{CallError, Peer, Token};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A world whose clock moves only when the test says, so a reader waiting for its turn
    /// stays waiting while other callers arrive.
    struct Still {
        storage: MemStorage,
        clock: AtomicU64,
        tokens: Tokens,
    }

    impl World for Still {
        type Storage = MemStorage;
        fn storage(&self) -> &MemStorage {
            &self.storage
        }
        fn now_ms(&self) -> u64 {
            self.clock.load(Ordering::SeqCst)
        }
        fn sleep(&self, ms: u64) -> impl Future<Output = ()> + Send {
            let until = self.now_ms() + ms;
            std::future::poll_fn(move |_| {
                if self.now_ms() >= until {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        }
        fn random(&self, buf: &mut [u8]) {
            buf.fill(7);
        }
        async fn call(&self, _: Peer, _: Request) -> Result<Response, CallError> {
            Err(CallError::Connect("no peers here".into()))
        }
        async fn notify_each(
            &self,
            _: Peer,
            _: Request,
        ) -> Vec<(String, Result<Response, CallError>)> {
            Vec::new()
        }
        async fn forward(&self, _: &str, _: &Request) -> Result<Response, CallError> {
            Err(CallError::Connect("no backends here".into()))
        }
        fn tokens(&self) -> &Tokens {
            &self.tokens
        }
        async fn hash_password(&self, password: &str) -> String {
            password.to_string()
        }
        async fn verify_password(&self, password: &str, hash: &str) -> bool {
            password == hash
        }
    }

    fn world() -> Still {
        Still {
            storage: MemStorage::default(),
            clock: AtomicU64::new(1_000),
            tokens: Tokens::opaque(),
        }
    }

    fn revoke(w: &Still, hash: &str, at_ms: u64) {
        pollster::block_on(async {
            let token = Token {
                token_hash: hash.into(),
                consumer_key: "ck".into(),
                application: "app".into(),
                expires_ms: u64::MAX,
                revoked: false,
            };
            w.storage.save_token(&token).await.expect("save");
            w.storage.revoke_token(hash, at_ms).await.expect("revoke");
        });
    }

    fn poll<T>(f: &mut Pin<Box<impl Future<Output = T>>>) -> Poll<T> {
        f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn callers_that_arrive_before_a_read_starts_share_it_and_get_what_each_asked_for() {
        let (w, feed) = (world(), Feed::default());
        revoke(&w, "early", 500);
        revoke(&w, "late", 900);
        // The first read, at once.
        assert_eq!(
            pollster::block_on(feed.revoked_since(&w, 0)),
            Ok(vec!["early".to_string(), "late".to_string()])
        );
        // The next may not start before FEED_EVERY_MS: two callers arrive meanwhile.
        let mut a = Box::pin(feed.revoked_since(&w, 800));
        let mut b = Box::pin(feed.revoked_since(&w, 400));
        assert!(poll(&mut a).is_pending() && poll(&mut b).is_pending());
        // A revocation made before the read starts is in it.
        revoke(&w, "meanwhile", 1_010);
        w.clock.fetch_add(FEED_EVERY_MS, Ordering::SeqCst);
        assert_eq!(
            poll(&mut a),
            Poll::Ready(Ok(vec!["late".to_string(), "meanwhile".to_string()]))
        );
        assert_eq!(
            poll(&mut b),
            Poll::Ready(Ok(vec![
                "early".to_string(),
                "late".to_string(),
                "meanwhile".to_string()
            ]))
        );
        assert_eq!(feed.reads(), 2, "one read for both");
    }

    #[test]
    fn a_reader_that_goes_away_leaves_its_place_to_a_waiting_caller() {
        let (w, feed) = (world(), Feed::default());
        assert_eq!(
            pollster::block_on(feed.revoked_since(&w, 0)),
            Ok(Vec::new())
        );
        let mut reader = Box::pin(feed.revoked_since(&w, 0));
        let mut other = Box::pin(feed.revoked_since(&w, 0));
        assert!(poll(&mut reader).is_pending() && poll(&mut other).is_pending());
        drop(reader);
        revoke(&w, "t", 1_000);
        w.clock.fetch_add(FEED_EVERY_MS, Ordering::SeqCst);
        assert_eq!(poll(&mut other), Poll::Ready(Ok(vec!["t".to_string()])));
        assert_eq!(feed.reads(), 2);
    }

    #[test]
    fn with_no_caller_nothing_is_read() {
        let feed = Feed::default();
        assert_eq!(feed.reads(), 0);
        let w = world();
        w.storage.set_down(crate::mem::Role::Apim, true);
        // A read that fails is an answer too, for every caller that waited for it.
        assert!(pollster::block_on(feed.revoked_since(&w, 0)).is_err());
        assert_eq!(feed.reads(), 1);
    }
}
