//! Independent runs on several threads, their results in run order: each run is
//! deterministic by itself, so the whole is the same as on one thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// `run(0..n)` on `jobs` threads; the results in index order. `done` hears of each as it
/// ends (in the order they end), with how many have.
pub fn in_order<T: Send>(
    n: usize,
    jobs: usize,
    run: impl Fn(usize) -> T + Sync,
    mut done: impl FnMut(usize, &T),
) -> Vec<T> {
    if jobs <= 1 || n <= 1 {
        return (0..n)
            .map(|i| {
                let t = run(i);
                done(i + 1, &t);
                t
            })
            .collect();
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(n) {
            let tx = tx.clone();
            let (next, run) = (&next, &run);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || tx.send((i, run(i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for (k, (i, t)) in rx.iter().enumerate() {
            done(k + 1, &t);
            out[i] = Some(t);
        }
    });
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_order_whatever_the_threads() {
        let square = |i: usize| {
            // Later runs end sooner: the order they end in is not the order asked for.
            std::thread::sleep(std::time::Duration::from_millis((20 - i as u64) * 2));
            i * i
        };
        let mut heard = Vec::new();
        let out = super::in_order(20, 3, square, |k, _| heard.push(k));
        assert_eq!(out, (0..20).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(heard, (1..=20).collect::<Vec<_>>());
        assert_eq!(super::in_order(5, 1, square, |_, _| {}), [0, 1, 4, 9, 16]);
    }
}
