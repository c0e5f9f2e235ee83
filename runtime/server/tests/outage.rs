//! Database outages on the real PostgreSQL and MariaDB of this machine, seen through a TCP
//! proxy the test controls: a database that refuses connections and one that accepts them and
//! never answers (a blackhole, what a network partition looks like). Every operation ends
//! within the bound, the breaker then fails at once, and the storage recovers when the
//! database is back; a whole deployment keeps answering API calls from its gateway's cache.

use apim_components::breaker::{FAILURES_TO_OPEN, PROBE_BOUND_MS, PROBE_EVERY_MS};
use apim_components::world::Storage;
use apim_runtime::dbproxy::{DbProxy, Mode};
use apim_runtime::guarded::Guarded;
use apim_runtime::storage::{Role, SqlStorage};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The bound on one operation in these tests.
const BOUND: Duration = Duration::from_millis(500);

/// The drill's relay in front of a database, on a port of its own.
async fn relay(upstream: &str) -> (DbProxy, u16) {
    let proxy = DbProxy::start("127.0.0.1:0", upstream.to_string())
        .await
        .expect("relay");
    let port = proxy.addr.port();
    (proxy, port)
}

async fn storage(url: String) -> Guarded {
    let urls: BTreeMap<Role, String> = [(Role::Apim, url)].into_iter().collect();
    let sql = SqlStorage::connect(&urls).await.expect("connect");
    apim_runtime::guarded::guard(sql, BOUND)
}

/// One outage of the apim database in `mode`: timed operations during it, then recovery.
async fn outage(upstream: &'static str, scheme: &str, mode: Mode) {
    let (proxy, port) = relay(upstream).await;
    let s = storage(format!("{scheme}@127.0.0.1:{}/test", port)).await;
    assert!(
        s.apis().await.is_ok(),
        "the database answers through the proxy"
    );
    proxy.set(mode);
    // Until the breaker opens, each operation fails within the bound.
    for k in 0..FAILURES_TO_OPEN {
        let t = Instant::now();
        let r = s.apis().await;
        let took = t.elapsed();
        assert!(r.is_err(), "operation {k} during the outage");
        assert!(
            took < BOUND + Duration::from_millis(300),
            "operation {k} took {took:?}"
        );
    }
    assert!(s.is_open(Role::Apim));
    // Then at once, naming the database.
    let t = Instant::now();
    let e = s.apis().await.expect_err("open breaker");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(e.0.contains("apim database"), "{}", e.0);
    // A probe goes out while the database still does not answer; it comes back while the
    // probe waits: the probe fails within its own bound, not an operation's.
    let t = Instant::now();
    let probing = s.probe();
    let back = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.set(Mode::Pass);
    };
    tokio::join!(probing, back);
    assert!(
        t.elapsed() < BOUND.min(Duration::from_millis(PROBE_BOUND_MS)) + Duration::from_millis(300),
        "a probe took {:?}",
        t.elapsed()
    );
    // The node's background probe closes the breaker on its next round, before any request
    // has to fail on it.
    let deadline = Instant::now() + Duration::from_millis(PROBE_EVERY_MS + PROBE_BOUND_MS) * 4;
    loop {
        tokio::time::sleep(Duration::from_millis(PROBE_EVERY_MS)).await;
        s.probe().await;
        if !s.is_open(Role::Apim) {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered");
    }
    assert_eq!(s.breakers(), vec![("apim", false)]);
    assert!(s.apis().await.is_ok());
}

#[tokio::test]
async fn postgresql_refusing_or_blackholed_fails_fast_then_recovers() {
    outage("127.0.0.1:5432", "postgres://postgres", Mode::Refuse).await;
    outage("127.0.0.1:5432", "postgres://postgres", Mode::Blackhole).await;
}

#[tokio::test]
async fn mariadb_refusing_or_blackholed_fails_fast_then_recovers() {
    outage("127.0.0.1:3306", "mysql://root", Mode::Refuse).await;
    outage("127.0.0.1:3306", "mysql://root", Mode::Blackhole).await;
}

const ADMIN: &str = "outage-admin-password";

/// One of this machine's database servers, and a place of its own for one test on it.
#[derive(Clone, Copy)]
enum Engine {
    Postgres,
    Mariadb,
}

impl Engine {
    fn upstream(self) -> &'static str {
        match self {
            Engine::Postgres => "127.0.0.1:5432",
            Engine::Mariadb => "127.0.0.1:3306",
        }
    }

    /// Runs an administrative statement on the server, directly.
    async fn admin(self, sql: &str) {
        sqlx::any::install_default_drivers();
        let url = match self {
            Engine::Postgres => "postgres://postgres@127.0.0.1:5432/test",
            Engine::Mariadb => "mysql://root@127.0.0.1:3306/test",
        };
        let pool = sqlx::AnyPool::connect(url)
            .await
            .expect("the database server");
        sqlx::query(sql).execute(&pool).await.expect(sql);
        pool.close().await;
    }

    /// A fresh place (a schema, a database) named `name`; the URL to it through `port`.
    async fn create(self, name: &str, port: u16) -> String {
        match self {
            Engine::Postgres => {
                self.admin(&format!("CREATE SCHEMA {name}")).await;
                format!(
                    "postgres://postgres@127.0.0.1:{port}/test?options=-c%20search_path%3D{name}"
                )
            }
            Engine::Mariadb => {
                self.admin(&format!("CREATE DATABASE {name}")).await;
                format!("mysql://root@127.0.0.1:{port}/{name}")
            }
        }
    }

    async fn drop(self, name: &str) {
        match self {
            Engine::Postgres => self.admin(&format!("DROP SCHEMA {name} CASCADE")).await,
            Engine::Mariadb => self.admin(&format!("DROP DATABASE {name}")).await,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mariadb => "mysql",
        }
    }
}

async fn send(
    e: &apim_runtime::smoke::Entries,
    to: &(String, u16),
    req: apim_components::Request,
) -> (u16, Duration, Option<String>) {
    let client =
        apim_runtime::http::tls_client(apim_runtime::tls::client_trusting(&e.ca).expect("CA"));
    let t = Instant::now();
    let r = apim_runtime::http::send(&client, &to.0, to.1, req, Duration::from_secs(20))
        .await
        .expect("an answer");
    (
        r.status,
        t.elapsed(),
        r.get_header("retry-after").map(String::from),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_refusing_a_deployment_serves_cached_calls_and_fails_the_rest_fast() {
    deployment_outage(Engine::Postgres, Mode::Refuse, "127.71.0.0/16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_blackholed_a_deployment_serves_cached_calls_and_fails_the_rest_fast() {
    deployment_outage(Engine::Postgres, Mode::Blackhole, "127.72.0.0/16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mariadb_refusing_a_deployment_serves_cached_calls_and_fails_the_rest_fast() {
    deployment_outage(Engine::Mariadb, Mode::Refuse, "127.73.0.0/16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mariadb_blackholed_a_deployment_serves_cached_calls_and_fails_the_rest_fast() {
    deployment_outage(Engine::Mariadb, Mode::Blackhole, "127.74.0.0/16").await;
}

/// The standalone pattern run by `apim up` on `engine` behind `proxy`, in a fresh place.
async fn standalone_behind(
    engine: Engine,
    port: u16,
    place: &str,
    range: &str,
) -> (apim_runtime::up::Up, tempfile::TempDir) {
    let url = engine.create(place, port).await;
    let text: String = apim_patterns::find("standalone")
        .expect("pattern")
        .template
        .lines()
        .map(|l| match l {
            l if l.starts_with("engine = ") => format!("engine = \"{}\"", engine.name()),
            l if l.starts_with("url = ") => format!("url = \"{url}\"\nnetwork = \"internal\""),
            l => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let checked = apim_topology::check_str("standalone", &text);
    assert_eq!(checked.errors(), 0, "the topology is valid");
    let data = tempfile::tempdir().expect("temp dir");
    let opts = apim_runtime::up::UpOptions {
        backends: Vec::new(),
        loopback: apim_runtime::up::Loopback::parse(range).expect("range"),
        data: data.path().to_path_buf(),
        admin_password: ADMIN.into(),
    };
    let up = apim_runtime::up::start(&checked.topology, &opts)
        .await
        .expect("apim up");
    assert!(
        up.databases.values().any(|u| u.contains(&port.to_string())),
        "the database is used as written: {:?}",
        up.databases
    );
    (up, data)
}

/// The standalone pattern on `engine` behind the proxy; five seconds of outage in `mode`.
async fn deployment_outage(engine: Engine, mode: Mode, range: &str) {
    use apim_components::Request;
    let place = format!("apim_outage_{}_{}", std::process::id(), mode as u8);
    let (proxy, port) = relay(engine.upstream()).await;
    let (up, _data) = standalone_behind(engine, port, &place, range).await;
    let e = apim_runtime::smoke::Entries::of(&up).expect("entries");
    let p = apim_runtime::smoke::provision(&e, ADMIN, "outage")
        .await
        .expect("provision");
    let invoke = || {
        Request::new("GET", &format!("/{}/v1/x", p.context))
            .header("authorization", &format!("Bearer {}", p.token))
    };
    assert_eq!(send(&e, &e.gateway, invoke()).await.0, 200);
    // The gateway trusts its cache once it has caught up with the revocations (every 0.5 s).
    tokio::time::sleep(Duration::from_millis(
        2 * apim_topology::timing::REVOCATIONS_MS,
    ))
    .await;
    proxy.set(mode);
    // Cached validations answer; what needs the database fails within the bound (at once when
    // the database refuses, or once its breaker is open), saying when to retry.
    let token = || apim_components::client::token(&p.consumer_key, &p.consumer_secret);
    let bound = Duration::from_millis(apim_topology::timing::DATABASE_MS + 500);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fast = 0;
    while Instant::now() < deadline {
        let (status, took, _) = send(&e, &e.gateway, invoke()).await;
        assert_eq!(status, 200, "a cached call during the outage");
        assert!(took < Duration::from_millis(500), "{took:?}");
        let (status, took, retry) = send(&e, &e.gateway, token()).await;
        assert_eq!(status, 503, "a token during the outage");
        assert!(took < bound, "{took:?}");
        assert_eq!(retry.as_deref(), Some("1"));
        fast += usize::from(took < Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once the breaker is open most are answered at once (a request that happens to be its
    // probe waits out the bound).
    assert!(
        fast >= 3,
        "only {fast} token requests were answered at once"
    );
    proxy.set(Mode::Pass);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if send(&e, &e.gateway, token()).await.0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no token after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(up);
    engine.drop(&place).await;
}

/// A gateway restarted while its registry answers slowly: until it has read the registry it
/// is unready and answers a published API's calls 503 ("starting"), never 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_never_answers_not_found_for_a_published_api() {
    use apim_components::Request;
    let engine = Engine::Postgres;
    let place = format!("apim_restart_{}", std::process::id());
    let (proxy, port) = relay(engine.upstream()).await;
    let (mut up, _data) = standalone_behind(engine, port, &place, "127.77.0.0/16").await;
    let e = apim_runtime::smoke::Entries::of(&up).expect("entries");
    let p = apim_runtime::smoke::provision(&e, ADMIN, "restart")
        .await
        .expect("provision");
    let node = up.nodes.remove(0);
    let plan = node.plan.clone();
    let urls = apim_runtime::databases::of_node(&plan, &up.databases);
    drop(node);
    proxy.set(Mode::Slow);
    let restart = tokio::spawn(apim_runtime::node::start(plan.clone(), urls, ADMIN));
    let gateway = plan
        .listeners
        .iter()
        .find(|l| l.component == apim_topology::vocab::Component::Gateway)
        .map(|l| (plan.host.clone(), l.port))
        .expect("a gateway listener");
    let client =
        apim_runtime::http::tls_client(apim_runtime::tls::client_trusting(&e.ca).expect("CA"));
    let mut seen = BTreeMap::<u16, usize>::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = Request::new("GET", &format!("/{}/v1/x", p.context))
            .header("authorization", &format!("Bearer {}", p.token));
        let sent =
            apim_runtime::http::send(&client, &gateway.0, gateway.1, req, Duration::from_secs(10))
                .await;
        // Refused until the restarted node listens.
        if let Ok(r) = sent {
            *seen.entry(r.status).or_default() += 1;
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 503, "{:?}", r.json_body());
            assert_eq!(r.json_body().expect("json")["error"], "starting");
        }
        assert!(Instant::now() < deadline, "not serving again: {seen:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        seen.get(&503).is_some_and(|n| *n > 0),
        "calls reached the gateway before it had read the registry: {seen:?}"
    );
    let restarted = restart.await.expect("task").expect("restarted");
    proxy.set(Mode::Pass);
    drop(restarted);
    drop(up);
    engine.drop(&place).await;
}

/// A statement the database refuses for its content (a NUL in a text on PostgreSQL, a string
/// too long for its column) is that request's failure: the breaker stays closed, and the next
/// operation goes to the database as usual.
async fn refused_statements_leave_the_breaker_closed(engine: Engine) {
    let place = format!("apim_statement_{}_{}", std::process::id(), engine as u8);
    let (_proxy, port) = relay(engine.upstream()).await;
    let url = engine.create(&place, port).await;
    let urls: BTreeMap<Role, String> = [(Role::User, url)].into_iter().collect();
    let s = apim_runtime::guarded::guard(SqlStorage::connect(&urls).await.expect("connect"), BOUND);
    let long = "x".repeat(10_000);
    let user = apim_components::world::User {
        name: long.clone(),
        password_hash: "h".into(),
        roles: Vec::new(),
    };
    for _ in 0..(3 * FAILURES_TO_OPEN) {
        let _ = s.user("x\u{0}").await;
        let created = s.create_user(&user).await;
        if let Err(e) = &created {
            assert!(!e.is_outage(), "{}: {}", engine.name(), e.0);
        }
    }
    assert!(
        !s.is_open(Role::User),
        "{}: the breaker opened",
        engine.name()
    );
    assert!(s.user("admin").await.is_ok());
    drop(s);
    engine.drop(&place).await;
}

#[tokio::test]
async fn postgresql_refusing_a_statement_is_no_outage() {
    refused_statements_leave_the_breaker_closed(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_refusing_a_statement_is_no_outage() {
    refused_statements_leave_the_breaker_closed(Engine::Mariadb).await;
}

/// 1,000 sign-ins with a NUL in the name, on a deployment whose databases are PostgreSQL or
/// MariaDB: each 400 before any query, no database is ever down, and sign-ins with the right
/// password go on answering 200 throughout.
async fn nul_sign_ins(engine: Engine, range: &str) {
    use apim_components::Request;
    let place = format!("apim_nul_{}_{}", std::process::id(), engine as u8);
    let (_proxy, port) = relay(engine.upstream()).await;
    let (up, _data) = standalone_behind(engine, port, &place, range).await;
    let e = apim_runtime::smoke::Entries::of(&up).expect("entries");
    let client =
        apim_runtime::http::tls_client(apim_runtime::tls::client_trusting(&e.ca).expect("CA"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, to) = (client.clone(), e.publisher.clone());
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..250 {
                let mut req =
                    Request::new("POST", "/api/login").header("content-type", "application/json");
                req.body = br#"{"username": "admin\u0000", "password": "whatever-it-is"}"#.to_vec();
                let r =
                    apim_runtime::http::send(&client, &to.0, to.1, req, Duration::from_secs(20))
                        .await;
                statuses.push(r.map_or(0, |r| r.status));
            }
            statuses
        });
    }
    let mut legitimate = Vec::new();
    while !tasks.is_empty() {
        legitimate.push(
            send(
                &e,
                &e.publisher,
                apim_components::client::login("admin", ADMIN),
            )
            .await
            .0,
        );
        while let Some(done) = tasks.try_join_next() {
            let statuses = done.expect("task");
            assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !legitimate.is_empty() && legitimate.iter().all(|s| *s == 200),
        "{legitimate:?}"
    );
    let metrics = apim_runtime::http::send(
        &client,
        &up.plan.nodes[0].host,
        up.plan.nodes[0].admin_port,
        Request::new("GET", "/metrics"),
        Duration::from_secs(5),
    )
    .await
    .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(text.contains("apim_database_down{"), "{text}");
    assert!(
        !text.contains("apim_database_down{node=\"all-in-one-1\",role=\"user\"} 1"),
        "{text}"
    );
    drop(up);
    engine.drop(&place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_nul_sign_ins_on_postgresql_never_look_like_an_outage() {
    nul_sign_ins(Engine::Postgres, "127.88.0.0/16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_nul_sign_ins_on_mariadb_never_look_like_an_outage() {
    nul_sign_ins(Engine::Mariadb, "127.89.0.0/16").await;
}
