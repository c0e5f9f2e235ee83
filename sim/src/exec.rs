//! The scheduler: one thread, a virtual clock in microseconds, tasks polled in the order they
//! were woken, timers fired in (time, sequence) order. Nothing here reads the wall clock or
//! depends on addresses, so the same spawns give the same run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Timer {
    at_us: u64,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Timer) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Timer) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Timer) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

#[derive(Default)]
struct Queues {
    timers: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    ready: VecDeque<usize>,
    spawned: Vec<Task>,
}

/// What tasks share: the clock and the queues. Cheap to clone.
#[derive(Clone, Default)]
pub struct Handle {
    now_us: Arc<AtomicU64>,
    queues: Arc<Mutex<Queues>>,
}

impl Handle {
    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::Relaxed)
    }

    /// Starts a task; it is first polled after the tasks already ready.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.queues().spawned.push(Box::pin(task));
    }

    /// Completes after `us` microseconds of virtual time.
    pub fn sleep(&self, us: u64) -> Sleep {
        Sleep {
            handle: self.clone(),
            at_us: self.now_us().saturating_add(us),
            registered: false,
        }
    }
}

pub struct Sleep {
    handle: Handle,
    at_us: u64,
    registered: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.handle.now_us() >= self.at_us {
            return Poll::Ready(());
        }
        // Every future of a task shares the task's waker, so one registration is enough.
        if !self.registered {
            self.registered = true;
            let mut q = self.handle.queues();
            q.seq += 1;
            let seq = q.seq;
            q.timers.push(Reverse(Timer {
                at_us: self.at_us,
                seq,
                waker: cx.waker().clone(),
            }));
        }
        Poll::Pending
    }
}

struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    queues: Arc<Mutex<Queues>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::Relaxed) {
            self.queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ready
                .push_back(self.id);
        }
    }
}

struct Slot {
    task: Task,
    waker: Arc<TaskWaker>,
}

/// Owns the tasks and runs them.
#[derive(Default)]
pub struct Executor {
    handle: Handle,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
}

impl Executor {
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Tasks not yet finished.
    pub fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn admit(&mut self, spawned: &mut Vec<Task>) {
        for task in spawned.drain(..) {
            let id = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            let waker = Arc::new(TaskWaker {
                id,
                queued: AtomicBool::new(true),
                queues: self.handle.queues.clone(),
            });
            self.slots[id] = Some(Slot { task, waker });
            self.handle.queues().ready.push_back(id);
        }
    }

    /// Runs every task until the clock would pass `until_us` and nothing is ready; the clock
    /// then stands at `until_us`.
    pub fn run_until(&mut self, until_us: u64) {
        enum Next {
            Admit,
            Poll(usize),
            Fire(Timer),
            Done,
        }
        let mut spawned = Vec::new();
        loop {
            // One lock a step: new tasks first, then ready ones, then the next timer.
            let next = {
                let mut q = self.handle.queues();
                if !q.spawned.is_empty() {
                    std::mem::swap(&mut q.spawned, &mut spawned);
                    Next::Admit
                } else if let Some(id) = q.ready.pop_front() {
                    Next::Poll(id)
                } else if q.timers.peek().is_some_and(|t| t.0.at_us <= until_us) {
                    q.timers.pop().map_or(Next::Done, |t| Next::Fire(t.0))
                } else {
                    Next::Done
                }
            };
            match next {
                Next::Admit => self.admit(&mut spawned),
                Next::Poll(id) => self.poll(id),
                Next::Fire(t) => {
                    if t.at_us > self.handle.now_us() {
                        self.handle.now_us.store(t.at_us, Ordering::Relaxed);
                    }
                    t.waker.wake();
                }
                Next::Done => break,
            }
        }
        if until_us > self.handle.now_us() {
            self.handle.now_us.store(until_us, Ordering::Relaxed);
        }
    }

    fn poll(&mut self, id: usize) {
        let Some(slot) = self.slots.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        slot.waker.queued.store(false, Ordering::Relaxed);
        let waker = Waker::from(slot.waker.clone());
        let mut cx = Context::from_waker(&waker);
        if slot.task.as_mut().poll(&mut cx).is_ready() {
            self.slots[id] = None;
            self.free.push(id);
        }
    }
}

/// Runs futures side by side inside one task; their outputs in the order given.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_then_spawn_order() {
        let mut ex = Executor::default();
        let h = ex.handle();
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, us) in [("b", 20), ("a", 10), ("c", 20)] {
            let (h2, log) = (h.clone(), log.clone());
            h.spawn(async move {
                h2.sleep(us).await;
                log.lock().expect("log").push((name, h2.now_us()));
            });
        }
        ex.run_until(15);
        assert_eq!(*log.lock().expect("log"), vec![("a", 10)]);
        assert_eq!(h.now_us(), 15);
        ex.run_until(100);
        assert_eq!(
            *log.lock().expect("log"),
            vec![("a", 10), ("b", 20), ("c", 20)]
        );
        assert_eq!(ex.live(), 0);
    }
}
