//! Abuse from the public side, against the component logic: throttling that cannot be turned
//! against the victim, no password oracle, backends as a policy, bytes no database stores,
//! floods of sign-ups and tokens, a revoked-token list that never forgets a live revocation,
//! and requests from another site riding on the portal's cookie.

mod world;

use apim_components::backends::Policy;
use apim_components::tokens::Revocation;
use world::*;

/// `req` as if it came from `address` (what the real world vouches for).
fn from(mut req: Request, address: &str) -> Request {
    req.client = Some(address.to_string());
    req
}

fn login_from(w: &W, node: &str, to: Peer, user: &str, password: &str, address: &str) -> Response {
    send(
        w,
        node,
        to,
        from(apim_components::client::login(user, password), address),
    )
}

fn token_from(w: &W, key: &str, secret: &str, address: &str) -> Response {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    send(
        w,
        "key-manager-1",
        Peer::KeyManager,
        from(
            Request::new("POST", "/token")
                .header("authorization", &format!("Basic {basic}"))
                .form(&[("grant_type", "client_credentials")]),
            address,
        ),
    )
}

#[test]
fn the_right_password_from_a_fresh_address_works_after_100_wrong_tries_from_others() {
    let w = world();
    // 100 wrong tries for the admin, 5 from each of 20 addresses, half at the store.
    for i in 0..100 {
        let (node, to) = if i % 2 == 0 {
            ("publisher-1", Peer::Publisher)
        } else {
            ("store-1", Peer::Store)
        };
        let address = format!("198.51.100.{}", i % 20);
        let r = login_from(&w, node, to, "admin", "not-the-password", &address);
        assert!(matches!(r.status, 401 | 429), "{}", r.status);
    }
    // The attacker's own address is throttled, even with the right password.
    let attacker = "203.0.113.66";
    let statuses: Vec<u16> = (0..8)
        .map(|_| {
            login_from(
                &w,
                "publisher-1",
                Peer::Publisher,
                "admin",
                "wrong",
                attacker,
            )
            .status
        })
        .collect();
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 3], "{statuses:?}");
    let r = login_from(
        &w,
        "publisher-1",
        Peer::Publisher,
        "admin",
        "admin-password",
        attacker,
    );
    assert_eq!(r.status, 429);
    assert!(r.get_header("retry-after").is_some());
    // The admin, from an address with no failures, signs in.
    let r = login_from(
        &w,
        "publisher-1",
        Peer::Publisher,
        "admin",
        "admin-password",
        "192.0.2.10",
    );
    assert_eq!(r.status, 200, "{:?}", json_of(&r));

    // The same for an OAuth client's secret.
    let (_, key, secret) = consumer(&w, "ivy", None);
    for i in 0..100 {
        let r = token_from(
            &w,
            &key,
            "not-the-secret",
            &format!("198.51.100.{}", i % 20),
        );
        assert!(matches!(r.status, 401 | 429), "{}", r.status);
    }
    for _ in 0..5 {
        assert_eq!(token_from(&w, &key, "wrong", attacker).status, 401);
    }
    assert_eq!(token_from(&w, &key, &secret, attacker).status, 429);
    let r = token_from(&w, &key, &secret, "192.0.2.10");
    assert_eq!(r.status, 200, "{:?}", json_of(&r));
    assert_eq!(r.get_header("cache-control"), Some("no-store"));
    assert_eq!(r.get_header("pragma"), Some("no-cache"));
}

#[test]
fn the_store_answers_a_privileged_accounts_right_and_wrong_passwords_alike() {
    let w = world();
    let right = login_from(
        &w,
        "store-1",
        Peer::Store,
        "admin",
        "admin-password",
        "192.0.2.1",
    );
    let wrong = login_from(
        &w,
        "store-1",
        Peer::Store,
        "admin",
        "wrong-one",
        "192.0.2.2",
    );
    assert_eq!(right.status, 401);
    assert_eq!(
        (right.status, &right.headers, &right.body),
        (wrong.status, &wrong.headers, &wrong.body)
    );
    // And it does not throttle the admin at the publisher.
    for _ in 0..10 {
        login_from(&w, "store-1", Peer::Store, "admin", "x", "192.0.2.3");
    }
    let r = login_from(
        &w,
        "publisher-1",
        Peer::Publisher,
        "admin",
        "admin-password",
        "192.0.2.3",
    );
    assert_eq!(r.status, 200);
}

fn create_api(w: &W, session: &str, context: &str, backend: &str) -> Response {
    send(
        w,
        "publisher-1",
        Peer::Publisher,
        apim_components::client::create_api(
            session,
            &apim_components::client::NewApi {
                name: "Api",
                version: "v1",
                context,
                backend,
            },
        ),
    )
}

#[test]
fn backends_on_special_private_or_own_addresses_are_refused_with_the_reason() {
    let w = world();
    let policy = Policy::new(
        &["10.20.0.0/16".into()],
        &[
            "10.0.1.11".into(),
            "10.0.9.10".into(),
            "edge.example".into(),
        ],
    )
    .expect("policy");
    assert!(w.0.backends.set(policy).is_ok());
    let admin = login(
        &w,
        "publisher-1",
        Peer::Publisher,
        "admin",
        "admin-password",
    );
    for (i, bad) in [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/",
        "http://[::1]:8080/",
        "http://0.0.0.0:8080/",
        "http://2130706433/",
        "http://10.0.1.11:9446/",
        "http://10.0.9.10:5432/",
        "http://edge.example/",
        "http://192.168.1.5/",
    ]
    .iter()
    .enumerate()
    {
        let r = create_api(&w, &admin, &format!("bad{i}"), bad);
        assert_eq!(r.status, 400, "{bad}: {:?}", json_of(&r));
        let message = json_of(&r)["message"].as_str().unwrap_or("").to_string();
        assert!(message.starts_with("`backend` "), "{bad}: {message}");
    }
    // An allow-listed private backend works, and `PUT` cannot re-point it anywhere refused.
    let r = create_api(&w, &admin, "good", "http://10.20.3.4:8080/");
    assert_eq!(r.status, 201, "{:?}", json_of(&r));
    let id = json_of(&r)["id"].as_str().expect("id").to_string();
    let put = send(
        &w,
        "publisher-1",
        Peer::Publisher,
        Request::new("PUT", &format!("/api/apis/{id}"))
            .header("authorization", &format!("Bearer {admin}"))
            .json(&json!({"backend": "http://169.254.169.254/"})),
    );
    assert_eq!(put.status, 400, "{:?}", json_of(&put));
    // An API whose backend the policy refuses (published before it) is refused at the
    // gateway, and the answer names no host.
    let api = publish(&w, &admin, "echo", "http://backend.example");
    let (token, _, _) = consumer(&w, "jay", Some(&api));
    assert_eq!(
        invoke(&w, "gateway-1", "/echo/v1/x", Some(&token)).status,
        200
    );
    let mut sneaky = apim_components::world::Api {
        id: api.clone(),
        name: "Echo".into(),
        version: "v1".into(),
        context: "echo".into(),
        backend: "http://169.254.169.254/".into(),
        description: String::new(),
        provider: "admin".into(),
        state: apim_components::world::ApiState::Published,
    };
    let note = Request::new("POST", "/internal/apis").json(&sneaky);
    let gw = &w.0.nodes[node(&w, "gateway-1")];
    let r = pollster::block_on(gw.internal(&w, Some(CALLER), note));
    assert_eq!(r.status, 200);
    let r = invoke(&w, "gateway-1", "/echo/v1/x", Some(&token));
    assert_eq!(r.status, 502);
    assert!(!String::from_utf8_lossy(&r.body).contains("169.254"));
    // A backend that fails names no host either.
    sneaky.backend = "http://unreachable.example:8080/".into();
    let note = Request::new("POST", "/internal/apis").json(&sneaky);
    pollster::block_on(gw.internal(&w, Some(CALLER), note));
    let r = invoke(&w, "gateway-1", "/echo/v1/x", Some(&token));
    assert_eq!(r.status, 502);
    assert!(!String::from_utf8_lossy(&r.body).contains("unreachable"));
}

#[test]
fn bytes_no_database_stores_are_400_before_any_query() {
    let w = world();
    let raw = |node: &str, to: Peer, path: &str, body: &str| {
        let mut req = Request::new("POST", path).header("content-type", "application/json");
        req.body = body.as_bytes().to_vec();
        send(&w, node, to, req)
    };
    for (node, to) in [("publisher-1", Peer::Publisher), ("store-1", Peer::Store)] {
        let r = raw(
            node,
            to,
            "/api/login",
            r#"{"username": "x\u0000", "password": "p"}"#,
        );
        assert_eq!(r.status, 400, "{:?}", json_of(&r));
        let long = format!(
            r#"{{"username": "{}", "password": "p"}}"#,
            "a".repeat(100_000)
        );
        assert_eq!(raw(node, to, "/api/login", &long).status, 400);
    }
    let r = send(
        &w,
        "key-manager-1",
        Peer::KeyManager,
        Request::new("POST", "/token").form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "x\0"),
            ("client_secret", "s"),
        ]),
    );
    assert_eq!(r.status, 400, "{:?}", json_of(&r));
    // None of it was counted: nothing was stored for these names.
    let r = login_from(
        &w,
        "publisher-1",
        Peer::Publisher,
        "admin",
        "admin-password",
        "unknown",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn floods_of_sign_ups_and_tokens_get_429_with_retry_after() {
    let w = world();
    let signup = |user: &str, address: &str| {
        send(
            &w,
            "store-1",
            Peer::Store,
            from(
                apim_components::client::signup(user, "a-long-password"),
                address,
            ),
        )
    };
    let flood: Vec<Response> = (0..40)
        .map(|i| signup(&format!("flood-{i}"), "203.0.113.9"))
        .collect();
    let created = flood.iter().filter(|r| r.status == 201).count();
    let limited = flood.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        created,
        apim_components::limits::SIGNUP_PER_ADDRESS.burst as usize
    );
    assert_eq!(created + limited, 40);
    assert!(
        flood
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| r.get_header("retry-after").is_some())
    );
    assert_eq!(signup("someone-else", "192.0.2.44").status, 201);
    // One client's tokens.
    let (_, key, secret) = consumer(&w, "kim", None);
    let answers: Vec<u16> = (0..80)
        .map(|_| token_from(&w, &key, &secret, "192.0.2.50").status)
        .collect();
    let issued = answers.iter().filter(|s| **s == 200).count();
    // The consumer's set-up took one already.
    assert_eq!(
        issued + 1,
        apim_components::limits::TOKEN_PER_CLIENT.burst as usize,
        "{answers:?}"
    );
    assert!(answers.iter().all(|s| matches!(s, 200 | 429)));
    let r = token_from(&w, &key, &secret, "192.0.2.50");
    assert_eq!(r.status, 429);
    assert!(r.get_header("retry-after").is_some());
    assert_eq!(r.get_header("cache-control"), Some("no-store"));
    // A moment later, one more.
    w.0.clock.fetch_add(
        apim_components::limits::TOKEN_PER_CLIENT.every_ms,
        Ordering::SeqCst,
    );
    assert_eq!(token_from(&w, &key, &secret, "192.0.2.50").status, 200);
}

#[test]
fn a_revoked_token_is_refused_after_200000_more_revocations() {
    let w = jwt_world(Revocation::Available);
    let admin = login(
        &w,
        "publisher-1",
        Peer::Publisher,
        "admin",
        "admin-password",
    );
    let api = publish(&w, &admin, "echo", "http://backend.example");
    let (revoked, key, secret) = consumer(&w, "lee", Some(&api));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    let live = json_of(&send(
        &w,
        "gateway-1",
        Peer::Gateway,
        Request::new("POST", "/token")
            .header("authorization", &format!("Basic {basic}"))
            .form(&[("grant_type", "client_credentials")]),
    ))["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let r = send(
        &w,
        "gateway-1",
        Peer::Gateway,
        Request::new("POST", "/revoke")
            .header("authorization", &format!("Basic {basic}"))
            .form(&[("token", &revoked)]),
    );
    assert_eq!(r.status, 200, "{:?}", json_of(&r));
    assert_eq!(
        invoke(&w, "gateway-1", "/echo/v1/x", Some(&revoked)).status,
        401
    );
    // 200,000 more revocations reach the gateway (as many minted and revoked tokens would).
    let gw = &w.0.nodes[node(&w, "gateway-1")];
    for i in 0u64..200_000 {
        let hash = apim_components::secret::hash(&format!("minted-{i}"));
        let note = Request::new("POST", "/internal/revoked").json(&json!({ "token_hash": hash }));
        let r = pollster::block_on(gw.internal(&w, Some(CALLER), note));
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        invoke(&w, "gateway-1", "/echo/v1/x", Some(&revoked)).status,
        401,
        "a revoked token came back after the list was full"
    );
    // A live token still works (the key manager vouches for it while the list overflowed).
    assert_eq!(
        invoke(&w, "gateway-1", "/echo/v1/x", Some(&live)).status,
        200
    );
}

#[test]
fn a_request_from_another_site_cannot_ride_on_the_session_cookie() {
    let w = world();
    let session = {
        let r = send(
            &w,
            "store-1",
            Peer::Store,
            Request::new("POST", "/api/signup")
                .json(&json!({"username": "max", "password": "a-long-password"})),
        );
        assert_eq!(r.status, 201);
        login(&w, "store-1", Peer::Store, "max", "a-long-password")
    };
    let cookie = format!("{}={session}", apim_components::auth::SESSION_COOKIE);
    let post = |content_type: &str, origin: Option<&str>| {
        let mut req = Request::new("POST", "/api/applications")
            .header("host", "store.example:9444")
            .header("cookie", &cookie)
            .header("content-type", content_type);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.body = br#"{"name": "csrf"}"#.to_vec();
        send(&w, "store-1", Peer::Store, req).status
    };
    // A form a page elsewhere can post: refused, whatever its origin.
    assert_eq!(post("text/plain", Some("https://evil.example")), 415);
    assert_eq!(post("text/plain", None), 415);
    // JSON from another origin: refused.
    assert_eq!(post("application/json", Some("https://evil.example")), 403);
    // The portal's own page.
    assert_eq!(
        post("application/json", Some("https://store.example:9444")),
        201
    );
    // A bearer token is no ambient credential: no origin rule.
    let r = send(
        &w,
        "store-1",
        Peer::Store,
        Request::new("POST", "/api/applications")
            .header("authorization", &format!("Bearer {session}"))
            .header("origin", "https://evil.example")
            .json(&json!({"name": "api-client"})),
    );
    assert_eq!(r.status, 201);
    // Sign-in itself takes JSON only (no login CSRF from a form).
    let mut form = Request::new("POST", "/api/login")
        .form(&[("username", "max"), ("password", "a-long-password")]);
    form.headers
        .push(("origin".into(), "https://evil.example".into()));
    assert_eq!(send(&w, "store-1", Peer::Store, form).status, 415);
}
