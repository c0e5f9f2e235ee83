//! The storage on real databases — an embedded SQLite file, the machine's PostgreSQL and its
//! MariaDB — with many nodes' worth of concurrent writers: nothing lost, nothing duplicated.

use apim_components::world::{Api, ApiState, Application, Session, Storage, Token, User};
use apim_runtime::storage::{Role, SqlStorage};
use std::collections::BTreeMap;

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const MARIADB: &str = "mysql://root@127.0.0.1:3306/test";

fn all_roles(url: &str) -> BTreeMap<Role, String> {
    [Role::User, Role::Apim, Role::Registry]
        .into_iter()
        .map(|r| (r, url.to_string()))
        .collect()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

async fn admin(url: &str, statement: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url} must be reachable for this test: {e}"));
    sqlx::query(statement)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    pool.close().await;
}

/// Two "nodes" (two storages on the same database) writing at once.
async fn exercise(urls: &BTreeMap<Role, String>) {
    let a = SqlStorage::connect(urls)
        .await
        .expect("first node connects and migrates");
    let b = SqlStorage::connect(urls)
        .await
        .expect("second node connects; migrations are idempotent");
    let app = Application {
        id: "app-1".into(),
        name: "x'); DROP TABLE apim_users; --".into(),
        owner: "alice".into(),
    };
    assert!(a.create_application(&app).await.expect("create"));
    assert!(
        !b.create_application(&app).await.expect("create again"),
        "no duplicate key"
    );
    assert_eq!(
        b.application("app-1").await.expect("read"),
        Some(app.clone())
    );

    // 40 subscriptions from two nodes at once, each sent twice: 40 rows, no error.
    let mut tasks = Vec::new();
    for i in 0..80 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.subscribe("app-1", &format!("api-{}", i / 2)).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        if t.await.expect("task").expect("subscribe") {
            created += 1;
        }
    }
    assert_eq!(created, 40, "each subscription created exactly once");
    assert_eq!(a.subscriptions("app-1").await.expect("list").len(), 40);
    assert!(b.subscribed("app-1", "api-7").await.expect("check"));

    // The same user signed up by two nodes at once: one wins.
    let user = User {
        name: "bob".into(),
        password_hash: "h".into(),
        roles: vec!["subscriber".into()],
    };
    let (x, y) = tokio::join!(a.create_user(&user), b.create_user(&user));
    assert_eq!(u8::from(x.expect("x")) + u8::from(y.expect("y")), 1);
    assert_eq!(a.user("bob").await.expect("user"), Some(user));
    a.create_session(&Session {
        token_hash: "s".into(),
        user: "bob".into(),
        expires_ms: 1 << 40,
    })
    .await
    .expect("session");
    assert_eq!(
        b.session("s").await.expect("session").map(|s| s.expires_ms),
        Some(1 << 40)
    );

    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let t = Token {
            token_hash: format!("t{i}"),
            consumer_key: "k".into(),
            application: "app-1".into(),
            expires_ms: 99,
            revoked: false,
        };
        tasks.push(tokio::spawn(async move { s.save_token(&t).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("token");
    }
    assert!(b.revoke_token("t3", 5_000).await.expect("revoke"));
    assert_eq!(
        a.revoked_since(4_000).await.expect("since"),
        vec![("t3".to_string(), 5_000)]
    );
    assert!(a.revoked_since(6_000).await.expect("since").is_empty());
    assert!(
        a.token("t3")
            .await
            .expect("token")
            .is_some_and(|t| t.revoked)
    );
    assert!(
        a.token("t4")
            .await
            .expect("token")
            .is_some_and(|t| !t.revoked)
    );
    assert!(!a.revoke_token("nope", 1).await.expect("revoke"));

    let mut api = Api {
        id: "api-1".into(),
        name: "Echo".into(),
        version: "v1".into(),
        context: "echo".into(),
        backend: "http://b".into(),
        description: String::new(),
        provider: "admin".into(),
        state: ApiState::Created,
    };
    a.save_api(&api).await.expect("save");
    api.state = ApiState::Published;
    b.save_api(&api).await.expect("update");
    b.register(&api).await.expect("register");
    assert_eq!(a.apis().await.expect("apis"), vec![api.clone()]);
    assert_eq!(a.registered().await.expect("registry"), vec![api]);
    a.unregister("api-1").await.expect("unregister");

    // Failed sign-ins, counted from two nodes into one window; a window past its time restarts.
    for node in [&a, &b, &a] {
        node.record_failure("account:erin", 1_000, 60_000)
            .await
            .expect("count");
    }
    let f = b
        .failures("account:erin", 2_000, 60_000)
        .await
        .expect("failures");
    assert_eq!((f.count, f.since_ms), (3, 1_000));
    assert_eq!(
        a.record_failure("account:erin", 70_000, 60_000)
            .await
            .expect("count")
            .count,
        1
    );
    b.clear_failures("account:erin").await.expect("clear");
    assert_eq!(
        a.failures("account:erin", 70_001, 60_000)
            .await
            .expect("failures")
            .count,
        0
    );
    // A password change; every session of the user ends.
    let grace = User {
        name: "grace".into(),
        password_hash: "old".into(),
        roles: vec!["subscriber".into()],
    };
    assert!(a.create_user(&grace).await.expect("user"));
    assert!(b.set_password("grace", "new").await.expect("set"));
    assert_eq!(
        a.user("grace")
            .await
            .expect("user")
            .map(|u| u.password_hash),
        Some("new".into())
    );
    assert!(!b.set_password("nobody", "x").await.expect("set"));
    for s in ["s-grace-1", "s-grace-2"] {
        a.create_session(&Session {
            token_hash: s.into(),
            user: "grace".into(),
            expires_ms: u64::MAX / 4,
        })
        .await
        .expect("session");
    }
    a.create_session(&Session {
        token_hash: "s-ended".into(),
        user: "grace".into(),
        expires_ms: 10,
    })
    .await
    .expect("session");
    assert_eq!(b.purge_sessions(11).await.expect("purge"), 1);
    assert!(a.session("s-ended").await.expect("session").is_none());
    b.delete_sessions_of("grace").await.expect("end sessions");
    assert!(a.session("s-grace-1").await.expect("session").is_none());
    // An application's keys revoked: the keys go, its live tokens are revoked now.
    let keys = apim_components::world::ClientKeys {
        consumer_key: "ck-revoke".into(),
        secret_hash: "h".into(),
        application: "app-revoke".into(),
    };
    a.save_client(&keys).await.expect("client");
    for t in ["tr-1", "tr-2"] {
        a.save_token(&Token {
            token_hash: t.into(),
            consumer_key: "ck-revoke".into(),
            application: "app-revoke".into(),
            expires_ms: u64::MAX / 4,
            revoked: false,
        })
        .await
        .expect("token");
    }
    let revoked = b
        .revoke_application_keys("app-revoke", 5_000)
        .await
        .expect("revoke keys");
    assert_eq!(revoked, ["tr-1", "tr-2"]);
    assert!(a.client("ck-revoke").await.expect("client").is_none());
    assert!(
        a.revoked_since(5_000)
            .await
            .expect("since")
            .contains(&("tr-2".to_string(), 5_000))
    );
    assert!(b.registered().await.expect("registry").is_empty());
}

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("apim.db").display());
    exercise(&all_roles(&url)).await;
}

#[tokio::test]
async fn sqlite_roles_in_separate_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = |n: &str| format!("sqlite://{}?mode=rwc", dir.path().join(n).display());
    let urls = [
        (Role::User, url("user.db")),
        (Role::Apim, url("apim.db")),
        (Role::Registry, url("registry.db")),
    ]
    .into_iter()
    .collect();
    exercise(&urls).await;
}

#[tokio::test]
async fn postgresql() {
    let schema = unique("apim_test");
    admin(POSTGRES, &format!("CREATE SCHEMA {schema}")).await;
    exercise(&all_roles(&format!(
        "{POSTGRES}?options=-c%20search_path%3D{schema}"
    )))
    .await;
    admin(POSTGRES, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[tokio::test]
async fn mariadb() {
    let db = unique("apim_test");
    admin(MARIADB, &format!("CREATE DATABASE {db}")).await;
    exercise(&all_roles(&format!("mysql://root@127.0.0.1:3306/{db}"))).await;
    admin(MARIADB, &format!("DROP DATABASE {db}")).await;
}

/// The CA `scripts/postgres-tls` gave the local PostgreSQL's server certificate.
const POSTGRES_CA: &str = "/var/lib/postgresql/apim-test-tls/ca.crt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_with_verify_full_speaks_tls_and_refuses_a_server_from_another_ca() {
    assert!(
        std::path::Path::new(POSTGRES_CA).is_file(),
        "{POSTGRES_CA} is missing: run ./scripts/test, which gives the local PostgreSQL a certificate for verify-full"
    );
    let schema = unique("apim_tls");
    admin(POSTGRES, &format!("CREATE SCHEMA {schema}")).await;
    let url = |ca: &str| {
        format!(
            "postgres://postgres@localhost:5432/test?sslmode=verify-full&sslrootcert={ca}&options=-c%20search_path%3D{schema}"
        )
    };
    let storage = SqlStorage::connect(&all_roles(&url(POSTGRES_CA)))
        .await
        .expect("verify-full against the server's CA");
    let user = User {
        name: "tls".into(),
        password_hash: "x".into(),
        roles: vec!["subscriber".into()],
    };
    assert!(storage.create_user(&user).await.expect("write over TLS"));
    // The connection is encrypted: PostgreSQL says so of its own session.
    let pool = sqlx::PgPool::connect(&url(POSTGRES_CA))
        .await
        .expect("connect");
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("pg_stat_ssl");
    assert!(ssl);
    pool.close().await;
    // A server whose certificate another CA signed is refused.
    let other = tempfile::tempdir().expect("temp dir");
    let ca = apim_pki::Ca::generate("other").expect("CA");
    let other_ca = other.path().join("ca.crt");
    std::fs::write(&other_ca, ca.cert_pem).expect("write");
    let refused = SqlStorage::connect(&all_roles(&url(&other_ca.display().to_string()))).await;
    assert!(refused.is_err(), "a server from another CA was trusted");
    admin(POSTGRES, &format!("DROP SCHEMA {schema} CASCADE")).await;
}
