//! Parse + check time of synthetic topologies of 100, 1,000 and 10,000 nodes.
//!
//! Target: 10,000 nodes in under 100 ms, and linear growth (10,000 / 1,000 under 12).
//! Run with `cargo bench -p apim-topology --bench check`.

use std::time::{Duration, Instant};

fn median_time(text: &str, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let checked = std::hint::black_box(apim_topology::check_str("synthetic.toml", text));
            let elapsed = start.elapsed();
            assert_eq!(checked.errors(), 0, "the synthetic topology must be valid");
            elapsed
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut results = Vec::new();
    for nodes in [100, 1_000, 10_000] {
        let text = apim_topology::synth::topology(nodes);
        let runs = if nodes >= 10_000 { 11 } else { 51 };
        let t = median_time(&text, runs);
        println!(
            "parse+check {nodes:>6} nodes ({:>7} bytes): {:>8.2} ms (median of {runs})",
            text.len(),
            t.as_secs_f64() * 1e3
        );
        results.push(t);
    }
    let ratio = results[2].as_secs_f64() / results[1].as_secs_f64();
    println!(
        "10,000 nodes: {:.2} ms (target < 100 ms)",
        results[2].as_secs_f64() * 1e3
    );
    println!("growth 10,000 / 1,000 nodes: {ratio:.2}x (target < 12x)");
}
