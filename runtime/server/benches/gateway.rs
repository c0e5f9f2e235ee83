//! The gateway against nginx, side by side in one run, both ending TLS with the same
//! certificate (the node's, from `apim up`'s PKI): wrk (one thread, keep-alive) calls an API
//! through the apim gateway with a JWT access token (decided at the gateway), through a second
//! deployment's gateway with an opaque token (its validation cached), then the same 1 KiB
//! backend through nginx
//! as a reverse proxy, and through hyper with apim's upstream pool and nothing else (the floor
//! of the gateway's own work, TLS too). Each runs with one worker thread. Prints requests/s, p99
//! and the ratio gateway/nginx (target >= 0.8); then the handshake rate of the gateway and of
//! nginx (every request on a new connection); and the RSS of the process running the node idle
//! (target under 30 MB). Needs `wrk` and `nginx` (Debian packages).
//! `APIM_BENCH_SERVE=1` keeps the proxies up and prints the wrk commands, for profiling.
//!
//! Run with `cargo bench -p apim-runtime --bench gateway`.

use apim_runtime::smoke::{self, Entries};
use apim_runtime::up::{self, Loopback, UpOptions};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

// The allocator the `apim` binary runs with, so the node measured is the node shipped.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SECONDS: u32 = 2;
const ROUNDS: usize = 9;
const HANDSHAKE_ROUNDS: usize = 5;
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

/// Where each process runs. With two cores or more, the proxy under test (the gateway's worker
/// or nginx's) gets a core of its own and wrk and the backend share another, so both proxies
/// are measured alike instead of by where the scheduler happened to put them.
#[derive(Clone, Copy)]
struct Cores {
    proxy: Option<usize>,
    load: Option<usize>,
}

impl Cores {
    fn pick() -> Cores {
        match core_affinity::get_core_ids() {
            Some(ids) if ids.len() >= 2 => Cores {
                load: Some(ids[0].id),
                proxy: Some(ids[ids.len() - 1].id),
            },
            _ => Cores {
                proxy: None,
                load: None,
            },
        }
    }
}

/// `program`, on `core` when there is one (util-linux's taskset).
fn on(core: Option<usize>, program: &str) -> Command {
    match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string(), program]);
            cmd
        }
        None => Command::new(program),
    }
}

fn nginx(dir: &std::path::Path, name: &str, server: &str, core: Option<usize>) -> Killed {
    let conf = format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\nerror_log stderr error;\npid {name}.pid;\nevents {{ worker_connections 1024; }}\nhttp {{\n access_log off;\n client_body_temp_path body;\n proxy_temp_path proxy;\n {server}\n}}\n"
    );
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).expect("write nginx config");
    let child = on(core, "nginx")
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

/// (requests/s, p99 in ms) of a wrk run; with `fresh`, every request opens a new connection
/// (a TLS handshake each).
fn wrk(url: &str, header: Option<&str>, core: Option<usize>, fresh: bool) -> (f64, f64) {
    let mut cmd = on(core, "wrk");
    cmd.args([
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{SECONDS}s"),
        "--latency",
    ]);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    if fresh {
        cmd.args(["-H", "Connection: close"]);
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A reverse proxy of hyper and apim's upstream pool alone, to `backend`, on port 8280, ending
/// TLS with `tls`.
async fn bare_proxy(
    host: &'static str,
    backend: &'static str,
    tls: std::sync::Arc<rustls::ServerConfig>,
) {
    let listener = apim_runtime::http::bind(host, 8280).await.expect("bind");
    let client = apim_runtime::http::stream_client();
    let serving = apim_runtime::http::Serving::tls(tls);
    apim_runtime::http::serve_connections(listener, serving, move |req, _| {
        let client = client.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.uri = hyper::Uri::from_static("/x");
            parts
                .headers
                .insert("host", hyper::header::HeaderValue::from_static(backend));
            match client
                .send(
                    backend,
                    hyper::Request::from_parts(parts, http_body_util::Either::Left(body)),
                )
                .await
            {
                Ok(r) => r.map(http_body_util::BodyExt::boxed),
                Err(e) => apim_runtime::http::write(apim_components::gateway::backend_failed(&e)),
            }
        }
    })
    .await
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
    let cores = Cores::pick();
    let dir = tempfile::tempdir().expect("temp dir");
    let body = "x".repeat(1024);
    let _backend = nginx(
        dir.path(),
        "backend",
        &format!("server {{ listen 127.60.0.100:8080; location / {{ return 200 \"{body}\"; }} }}"),
        cores.load,
    );

    // The gateway's runtime gets one worker thread, as nginx gets one worker process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(move || {
            if let Some(id) = cores.proxy {
                core_affinity::set_for_current(core_affinity::CoreId { id });
            }
        })
        .enable_all()
        .build()
        .expect("runtime");
    let topology = apim_topology::check_str("bench.toml", TOPOLOGY);
    let opts = UpOptions {
        // The backend nginx and the gateways share, on loopback: allowed for the benchmark.
        backends: vec!["127.60.0.100".into()],
        loopback: Loopback::parse("127.60.0.0/24").expect("range"),
        data: dir.path().join("data"),
        admin_password: PASSWORD.into(),
    };
    let up = rt
        .block_on(up::start(&topology.topology, &opts))
        .expect("node starts");
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_mb();
    // The second deployment, for opaque tokens, starts after the idle node was measured.
    let opaque_topology = apim_topology::check_str(
        "bench-opaque.toml",
        &TOPOLOGY.replace(
            "name = \"bench\"",
            "name = \"bench-opaque\"\ntokens = \"opaque\"",
        ),
    );
    let opaque_up = rt
        .block_on(up::start(
            &opaque_topology.topology,
            &UpOptions {
                // The backend nginx and the gateways share, on loopback: allowed for the benchmark.
                backends: vec!["127.60.0.100".into()],
                loopback: Loopback::parse("127.60.1.0/24").expect("range"),
                data: dir.path().join("data-opaque"),
                admin_password: PASSWORD.into(),
            },
        ))
        .expect("opaque node starts");
    // nginx ends TLS with the very certificate the gateway shows, TLS 1.3 as the gateway
    // negotiates with wrk, and resumes sessions as rustls does by default (a session cache and
    // tickets), so the handshake rates compare like with like.
    let node = &up.plan.nodes[0];
    let _proxy = nginx(
        dir.path(),
        "proxy",
        &format!(
            "upstream backend {{ server 127.60.0.100:8080; keepalive 32; }}\n ssl_certificate {};\n ssl_certificate_key {};\n ssl_protocols TLSv1.3;\n ssl_session_cache shared:bench:10m;\n ssl_session_tickets on;\n server {{ listen 127.60.0.200:8280 ssl; location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}",
            node.tls.cert, node.tls.key
        ),
        cores.proxy,
    );
    let node_tls = apim_runtime::tls::Tls::load(&node.tls).expect("node TLS");
    let mut entries = rt.block_on(async { Entries::of(&up) }).expect("entries");
    entries.backend = "http://127.60.0.100:8080".into();
    let p = rt
        .block_on(smoke::provision(&entries, PASSWORD, "bench"))
        .expect("provision");
    let (host, port) = &entries.gateway;
    let gateway_url = format!("https://{host}:{port}/{}/v1/x", p.context);
    let auth = format!("Authorization: Bearer {}", p.token);
    assert!(apim_components::jwt::looks_like(&p.token), "a JWT");
    let mut opaque_entries = rt
        .block_on(async { Entries::of(&opaque_up) })
        .expect("entries");
    opaque_entries.backend = "http://127.60.0.100:8080".into();
    let op = rt
        .block_on(smoke::provision(&opaque_entries, PASSWORD, "bench"))
        .expect("provision");
    assert!(
        !apim_components::jwt::looks_like(&op.token),
        "an opaque token"
    );
    let (ohost, oport) = &opaque_entries.gateway;
    let opaque_url = format!("https://{ohost}:{oport}/{}/v1/x", op.context);
    let opaque_auth = format!("Authorization: Bearer {}", op.token);
    // hyper and the upstream pool alone, on the same runtime, with no gateway logic: the floor
    // the gateway's own work is measured from.
    rt.spawn(bare_proxy(
        "127.60.0.201",
        "127.60.0.100:8080",
        node_tls.server().expect("TLS server"),
    ));
    let proxies = [
        ("apim gateway", gateway_url.as_str(), Some(auth.as_str())),
        ("nginx proxy", "https://127.60.0.200:8280/x", None),
        ("hyper alone", "https://127.60.0.201:8280/x", None),
        (
            "apim, opaque",
            opaque_url.as_str(),
            Some(opaque_auth.as_str()),
        ),
    ];
    if std::env::var_os("APIM_BENCH_SERVE").is_some() {
        // For profiling: keep every proxy up and say how to call them.
        let pin = cores
            .load
            .map_or(String::new(), |c| format!("taskset -c {c} "));
        for (name, url, header) in proxies {
            let header = header.map_or(String::new(), |h| format!("-H '{h}' "));
            println!("{name}: {pin}wrk -t1 -c{CONNECTIONS} -d10s {header}{url}");
        }
        println!("pid {}", std::process::id());
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    // Warm the validation cache and the connections, then measure in short rounds, each
    // proxy once per round, in an order that turns: this machine's speed drifts, and short
    // alternating rounds expose all three to the same drift. Ratios are taken per round.
    for (_, url, header) in proxies {
        let _ = wrk(url, header, cores.load, false);
    }
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); proxies.len()];
    for round in 0..ROUNDS {
        for k in 0..proxies.len() {
            let i = (round + k) % proxies.len();
            let (_, url, header) = proxies[i];
            runs[i].push(wrk(url, header, cores.load, false));
        }
    }
    // Handshakes: the gateway and nginx, every request on a new TLS connection.
    let mut handshakes: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for round in 0..HANDSHAKE_ROUNDS {
        for k in 0..2 {
            let i = (round + k) % 2;
            let (_, url, header) = proxies[i];
            handshakes[i].push(wrk(url, header, cores.load, true).0);
        }
    }
    let ratios: Vec<f64> = (0..ROUNDS)
        .map(|r| runs[0][r].0 / runs[1][r].0.max(1.0))
        .collect();
    let floor: Vec<f64> = (0..ROUNDS)
        .map(|r| runs[0][r].0 / runs[2][r].0.max(1.0))
        .collect();
    let opaque: Vec<f64> = (0..ROUNDS)
        .map(|r| runs[3][r].0 / runs[1][r].0.max(1.0))
        .collect();
    let jwt_opaque: Vec<f64> = (0..ROUNDS)
        .map(|r| runs[0][r].0 / runs[3][r].0.max(1.0))
        .collect();
    println!(
        "wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, TLS 1.3 with one certificate, 1 KiB responses, keep-alive, one worker each; medians of {ROUNDS} rounds"
    );
    match (cores.proxy, cores.load) {
        (Some(p), Some(l)) => {
            println!("the proxy under test on core {p}; wrk and the backend on core {l}")
        }
        _ => println!("one core: nothing pinned"),
    }
    for ((name, _, _), r) in proxies.iter().zip(&runs) {
        let rps = median(r.iter().map(|x| x.0).collect());
        let p99 = median(r.iter().map(|x| x.1).collect());
        println!("{name:<13} {rps:>10.0} requests/s, p99 {p99:>7.2} ms");
    }
    let shown = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "ratio gateway/nginx: {:.2} (target >= 0.8); per round: {}",
        median(ratios.clone()),
        shown(&ratios)
    );
    println!(
        "ratio gateway with opaque tokens/nginx: {:.2}; per round: {}",
        median(opaque.clone()),
        shown(&opaque)
    );
    println!(
        "ratio JWT/opaque (both gateways): {:.2}; per round: {}",
        median(jwt_opaque.clone()),
        shown(&jwt_opaque)
    );
    println!(
        "ratio gateway/hyper alone: {:.2} (the cost of the gateway's own work); per round: {}",
        median(floor.clone()),
        shown(&floor)
    );
    let (gw, ng) = (median(handshakes[0].clone()), median(handshakes[1].clone()));
    println!(
        "TLS handshakes (a new connection per request): apim gateway {gw:.0}/s, nginx {ng:.0}/s, ratio {:.2}; medians of {HANDSHAKE_ROUNDS} rounds",
        gw / ng.max(1.0)
    );
    println!("RSS of the process running one idle all-in-one node: {idle:.1} MB (target < 30 MB)");
    drop(up);
}
