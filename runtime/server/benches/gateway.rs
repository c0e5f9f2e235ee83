//! The gateway against nginx, side by side in one run: wrk (one thread, keep-alive) calls an
//! API through the apim gateway with a valid cached token, then the same 1 KiB backend through
//! nginx as a plain reverse proxy. Both run with one worker thread. Prints requests/s, p99 and
//! the ratio gateway/nginx (target >= 0.8), and the RSS of the process running the node idle
//! (target under 30 MB). Needs `wrk` and `nginx` (Debian packages).
//!
//! Run with `cargo bench -p apim-runtime --bench gateway`.

use apim_runtime::smoke::{self, Entries};
use apim_runtime::up::{self, Loopback, UpOptions};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECONDS: u32 = 4;
const ROUNDS: usize = 5;
const CONNECTIONS: u32 = 32;
const PASSWORD: &str = "bench-admin-password";

const TOPOLOGY: &str = r#"version = 1
[deployment]
name = "bench"
[networks.lan]
[databases.local]
roles = ["user", "apim", "registry"]
engine = "sqlite"
url = "sqlite://bench.db"
[clusters.node]
components = ["publisher", "store", "key-manager", "gateway"]
network = "lan"
hosts = ["10.0.0.1"]
"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx(dir: &std::path::Path, name: &str, server: &str) -> Killed {
    let conf = format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\nerror_log stderr error;\npid {name}.pid;\nevents {{ worker_connections 1024; }}\nhttp {{\n access_log off;\n client_body_temp_path body;\n proxy_temp_path proxy;\n {server}\n}}\n"
    );
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).expect("write nginx config");
    let child = Command::new("nginx")
        .env(
            "PATH",
            format!("{}:/usr/sbin", std::env::var("PATH").unwrap_or_default()),
        )
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx is installed");
    std::thread::sleep(Duration::from_millis(300));
    Killed(child)
}

/// (requests/s, p99 in ms) of a wrk run.
fn wrk(url: &str, header: Option<&str>) -> (f64, f64) {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{SECONDS}s"),
        "--latency",
    ]);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| {
            let v = v.trim();
            let (n, unit) =
                v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let n: f64 = n.parse().unwrap_or(0.0);
            match unit {
                "us" => n / 1000.0,
                "s" => n * 1000.0,
                _ => n,
            }
        })
        .unwrap_or(0.0);
    let non2xx = text.lines().find(|l| l.contains("Non-2xx"));
    assert!(non2xx.is_none(), "errors during the run of {url}:\n{text}");
    (rps, p99)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = "x".repeat(1024);
    let _backend = nginx(
        dir.path(),
        "backend",
        &format!("server {{ listen 127.60.0.100:8080; location / {{ return 200 \"{body}\"; }} }}"),
    );
    let _proxy = nginx(
        dir.path(),
        "proxy",
        "upstream backend { server 127.60.0.100:8080; keepalive 32; }\n server { listen 127.60.0.200:8280; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }",
    );
    // The gateway's runtime gets one worker thread, as nginx gets one worker process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let topology = apim_topology::check_str("bench.toml", TOPOLOGY);
    let opts = UpOptions {
        loopback: Loopback::parse("127.60.0.0/24").expect("range"),
        data: dir.path().join("data"),
        admin_password: PASSWORD.into(),
    };
    let up = rt
        .block_on(up::start(&topology.topology, &opts))
        .expect("node starts");
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_mb();
    let mut entries = rt.block_on(async { Entries::of(&up) }).expect("entries");
    entries.backend = "http://127.60.0.100:8080".into();
    let p = rt
        .block_on(smoke::provision(&entries, PASSWORD, "bench"))
        .expect("provision");
    let (host, port) = &entries.gateway;
    let gateway_url = format!("http://{host}:{port}/{}/v1/x", p.context);
    let auth = format!("Authorization: Bearer {}", p.token);
    if std::env::var_os("APIM_BENCH_SERVE").is_some() {
        // For profiling: keep both proxies up and say how to call them.
        println!("wrk -t1 -c{CONNECTIONS} -d10s -H '{auth}' {gateway_url}");
        println!("wrk -t1 -c{CONNECTIONS} -d10s http://127.60.0.200:8280/x");
        println!("pid {}", std::process::id());
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    // Warm the validation cache and the connections, then measure in alternating rounds: this
    // machine's speed drifts, and alternating exposes both to the same drift.
    let _ = wrk(&gateway_url, Some(&auth));
    let mut gateway = Vec::new();
    let mut proxy = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let g = wrk(&gateway_url, Some(&auth));
        let n = wrk("http://127.60.0.200:8280/x", None);
        ratios.push(format!("{:.2}", g.0 / n.0.max(1.0)));
        gateway.push(g);
        proxy.push(n);
    }
    let median = |runs: &mut Vec<(f64, f64)>| {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        runs[runs.len() / 2]
    };
    let (g_rps, g_p99) = median(&mut gateway);
    let (n_rps, n_p99) = median(&mut proxy);
    println!(
        "wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, 1 KiB responses, keep-alive, one worker each; median of {ROUNDS} alternating rounds"
    );
    println!("apim gateway: {g_rps:>10.0} requests/s, p99 {g_p99:>7.2} ms");
    println!("nginx proxy:  {n_rps:>10.0} requests/s, p99 {n_p99:>7.2} ms");
    println!(
        "ratio gateway/nginx: {:.2} (target >= 0.8); per round: {}",
        if n_rps > 0.0 { g_rps / n_rps } else { 0.0 },
        ratios.join(" ")
    );
    println!("RSS of the process running one idle all-in-one node: {idle:.1} MB (target < 30 MB)");
    drop(up);
}
