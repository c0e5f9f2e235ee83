//! Parse + check time of synthetic topologies of 1,000, 10,000 and 100,000 nodes, in three
//! shapes (`apim_topology::synth`): mixed clusters with a balancer each, gateway-heavy, and a
//! fleet whose gateway clusters all sit behind the same edge balancers.
//!
//! Targets (issue "Fleet scale"): 10,000 nodes under 50 ms, 100,000 under 1 s, and linear
//! growth (100,000 / 10,000 under 12). Run with `cargo bench -p apim-topology --bench check`.

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
    type Shape = fn(usize) -> String;
    let shapes: [(&str, Shape); 3] = [
        ("mixed", apim_topology::synth::topology),
        ("gateway-heavy", apim_topology::synth::gateway_heavy),
        ("fleet", apim_topology::synth::fleet),
    ];
    // `cargo bench -p apim-topology --bench check -- fleet` measures one shape.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (shape, make) in shapes {
        if !only.is_empty() && !only.iter().any(|o| o == shape) {
            continue;
        }
        let mut results = Vec::new();
        for nodes in [1_000, 10_000, 100_000] {
            let text = make(nodes);
            let runs = match nodes {
                100_000 => 3,
                10_000 => 11,
                _ => 51,
            };
            let t = median_time(&text, runs);
            println!(
                "{shape:>13} parse+check {nodes:>7} nodes ({:>8} bytes): {:>9.2} ms (median of {runs})",
                text.len(),
                t.as_secs_f64() * 1e3
            );
            results.push(t);
        }
        let ratio = |a: usize, b: usize| results[a].as_secs_f64() / results[b].as_secs_f64();
        println!(
            "{shape:>13} growth: 10k/1k {:.1}x, 100k/10k {:.1}x (target < 12x); 10k {:.1} ms (< 50), 100k {:.0} ms (< 1000)",
            ratio(1, 0),
            ratio(2, 1),
            results[1].as_secs_f64() * 1e3,
            results[2].as_secs_f64() * 1e3,
        );
    }
}
