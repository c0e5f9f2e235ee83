//! Build time of synthetic topologies of 1,000 and 10,000 nodes: check, plan, every emitter,
//! and the files written to a temporary folder, for two shapes (`apim_topology::synth`):
//! gateway-heavy (a balancer per cluster) and a fleet (every gateway cluster behind the same
//! edge balancers). Target: 10,000 nodes under 1 s, growing linearly. Run with
//! `cargo bench -p apim-compiler --bench build` (`-- fleet` for one shape).
//!
//! A 10,000-node build writes about 26,000 files; on a disk file system their creation alone
//! can take seconds, so the folder is on tmpfs (/dev/shm) when there is one, and the time of
//! rendering without writing is printed too.

use std::time::{Duration, Instant};

fn build_and_write(text: &str, dir: &std::path::Path) -> (usize, usize) {
    let checked = apim_topology::check_str("synthetic.toml", text);
    assert_eq!(checked.errors(), 0, "the synthetic topology must be valid");
    let out = apim_compiler::build(&checked.topology);
    let mut bytes = 0;
    for (path, content) in &out.files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("create folder");
        }
        std::fs::write(&file, content).expect("write");
        bytes += content.len();
    }
    (out.files.len(), bytes)
}

/// APIM_BENCH_DIR chooses another folder, such as one on disk.
fn temp_root() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("APIM_BENCH_DIR") {
        return dir.into();
    }
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn main() {
    println!("writing under {}", temp_root().display());
    type Shape = fn(usize) -> String;
    let shapes: [(&str, Shape); 2] = [
        ("gateway-heavy", apim_topology::synth::gateway_heavy),
        ("fleet", apim_topology::synth::fleet),
    ];
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (shape, make) in shapes {
        if only.is_empty() || only.iter().any(|o| o == shape) {
            measure(shape, make);
        }
    }
}

fn measure(shape: &str, make: fn(usize) -> String) {
    let mut times = Vec::new();
    for nodes in [1_000, 10_000] {
        let text = make(nodes);
        let mut runs: Vec<Duration> = Vec::new();
        let mut size = (0, 0);
        for _ in 0..5 {
            let dir = temp_root().join(format!("apim-bench-build-{}-{nodes}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let start = Instant::now();
            size = build_and_write(&text, &dir);
            runs.push(start.elapsed());
            let _ = std::fs::remove_dir_all(&dir);
        }
        runs.sort();
        let t = runs[runs.len() / 2];
        let render = {
            let start = Instant::now();
            let checked = apim_topology::check_str("synthetic.toml", &text);
            std::hint::black_box(apim_compiler::build(&checked.topology));
            start.elapsed()
        };
        println!(
            "{shape:>13} build {nodes:>6} nodes: {:>8.1} ms written (median of 5), {:>8.1} ms without writing; {} files, {:.1} MB",
            t.as_secs_f64() * 1e3,
            render.as_secs_f64() * 1e3,
            size.0,
            size.1 as f64 / 1e6
        );
        times.push(t);
    }
    println!(
        "{shape:>13} 10,000 nodes: {:.0} ms (target < 1000 ms); growth 10,000 / 1,000 nodes: {:.2}x (linear is 10x)",
        times[1].as_secs_f64() * 1e3,
        times[1].as_secs_f64() / times[0].as_secs_f64()
    );
}
