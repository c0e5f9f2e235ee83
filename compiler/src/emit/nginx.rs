//! `lb/<lb>/nginx.conf`: the balancer as open-source nginx (1.22): TLS ended with the balancer's
//! (or the edge) certificate and made anew to each node, checked against the deployment CA;
//! internal listeners passed through untouched (`stream`), so the caller's certificate reaches
//! the node; passive health checks, sticky portals by a consistent hash of the session cookie,
//! X-Forwarded-* headers. Open-source nginx cannot ask a node's `/ready`: a draining node is
//! left out when it stops accepting, and a refused connection is retried on another node
//! (nothing was sent).

use super::header;
use crate::plan::{
    BalancerPlan, BalancerRoute, Plan, RouteListener, SESSION_COOKIE, component_name,
};
use std::fmt::Write;

fn upstream_name(r: &BalancerRoute) -> String {
    format!("{}_{}", r.component.as_str().replace('-', "_"), r.port)
}

/// `host:port`, with IPv6 addresses in brackets.
pub fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub fn render(plan: &Plan, b: &BalancerPlan) -> String {
    render_on(plan, b, None)
}

/// The config listening on one address only (`listen host:port`), for running beside other
/// listeners of the same ports, as tests and `apim up` do; otherwise on every address.
pub fn render_on(plan: &Plan, b: &BalancerPlan, listen: Option<&str>) -> String {
    render_as(
        plan,
        b,
        listen,
        &format!("nginx config of balancer `{}`", b.name),
    )
}

/// The config, its header saying what it is.
pub fn render_as(plan: &Plan, b: &BalancerPlan, listen: Option<&str>, what: &str) -> String {
    let mut s = header("#", what, &plan.deployment);
    let _ = writeln!(
        s,
        "# Check: nginx -t -c \"$PWD/nginx.conf\"    Run: nginx -c \"$PWD/nginx.conf\""
    );
    s.push_str("# Upstream host names are resolved when nginx starts.\n\n");
    let (public, internal): (Vec<&BalancerRoute>, Vec<&BalancerRoute>) = b
        .routes
        .iter()
        .partition(|r| r.listener == RouteListener::Public);
    if !internal.is_empty() {
        s.push_str("# Internal listeners are passed through by the stream module (Debian: libnginx-mod-stream).\n");
        s.push_str("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\n");
    }
    s.push_str("worker_processes auto;\nerror_log stderr warn;\npid nginx.pid;\n\n");
    s.push_str("events {\n    worker_connections 4096;\n}\n");
    if !internal.is_empty() {
        stream(&mut s, &internal, listen);
    }
    s.push_str("\nhttp {\n");
    s.push_str(
        "    access_log off;\n    client_body_temp_path client_body;\n    proxy_temp_path proxy;\n",
    );
    s.push_str("    proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n");
    s.push_str("    proxy_set_header Host $host;\n    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n");
    s.push_str("    proxy_set_header X-Forwarded-Proto $scheme;\n    proxy_set_header X-Forwarded-Host $host;\n");
    s.push_str("    proxy_set_header X-Forwarded-Port $server_port;\n");
    let (cert, key) = match &b.edge {
        Some(e) => (e.cert.as_str(), e.key.as_str()),
        None => (b.tls.cert.as_str(), b.tls.key.as_str()),
    };
    let _ = writeln!(
        s,
        "    # Clients: TLS with {}.\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:apim_tls:10m;",
        if b.edge.is_some() {
            "the edge certificate"
        } else {
            "the balancer's own certificate"
        }
    );
    let _ = writeln!(
        s,
        "    # Nodes: TLS again, their certificates checked against the deployment CA; the balancer\n    # shows its own.\n    proxy_ssl_verify on;\n    proxy_ssl_trusted_certificate {};\n    proxy_ssl_certificate {};\n    proxy_ssl_certificate_key {};\n    proxy_ssl_protocols TLSv1.2 TLSv1.3;\n    proxy_ssl_session_reuse on;",
        b.tls.ca, b.tls.cert, b.tls.key
    );
    if let Some(r) = b.routes.first() {
        let _ = writeln!(
            s,
            "    proxy_connect_timeout {}ms;\n    proxy_read_timeout {}ms;",
            r.timeouts.connect_ms, r.timeouts.read_ms
        );
    }
    s.push_str("    # A request whose connection fails before any byte is sent is retried on another node.\n");
    s.push_str("    proxy_next_upstream error timeout;\n    proxy_next_upstream_tries 2;\n");
    if b.routes.iter().any(|r| r.sticky) {
        let _ = writeln!(
            s,
            "\n    # Portal sessions stick to a node by their cookie; requests without one spread out.\n    map $cookie_{SESSION_COOKIE} $apim_sticky_key {{\n        \"\" $request_id;\n        default $cookie_{SESSION_COOKIE};\n    }}"
        );
    }
    for r in &public {
        let _ = writeln!(s, "\n    upstream {} {{", upstream_name(r));
        if r.sticky {
            s.push_str("        hash $apim_sticky_key consistent;\n");
        }
        servers(&mut s, r);
        s.push_str("        keepalive 32;\n    }\n");
    }
    for r in &public {
        let _ = writeln!(
            s,
            "\n    server {{\n        listen {} ssl;\n        location / {{\n            proxy_pass https://{};\n            proxy_ssl_name {};\n        }}\n    }}",
            listen.map_or_else(|| r.port.to_string(), |h| address(h, r.port)),
            upstream_name(r),
            component_name(&plan.deployment, r.component)
        );
    }
    s.push_str("}\n");
    s
}

/// An upstream's nodes, with passive health checks: a node failing as often as the active
/// checks' `fall` within their span is left out for that span.
fn servers(s: &mut String, r: &BalancerRoute) {
    let fail_timeout = r.health.interval_ms * u64::from(r.health.fall) / 1000;
    for u in &r.upstream {
        let _ = writeln!(
            s,
            "        server {} max_fails={} fail_timeout={}s;  # {}",
            address(&u.host, u.port),
            r.health.fall,
            fail_timeout.max(1),
            u.node
        );
    }
}

/// The internal routes: TCP passed through to the nodes' internal listeners.
fn stream(s: &mut String, routes: &[&BalancerRoute], listen: Option<&str>) {
    s.push_str("\nstream {\n");
    for r in routes {
        let _ = writeln!(s, "    upstream {}_internal {{", upstream_name(r));
        servers(s, r);
        s.push_str("    }\n");
        let _ = writeln!(
            s,
            "    server {{\n        listen {};\n        proxy_pass {}_internal;\n        proxy_connect_timeout {}ms;\n        proxy_timeout {}ms;\n        proxy_next_upstream on;\n        proxy_next_upstream_tries 2;\n    }}",
            listen.map_or_else(|| r.port.to_string(), |h| address(h, r.port)),
            upstream_name(r),
            r.timeouts.connect_ms,
            r.timeouts.read_ms
        );
    }
    s.push_str("}\n");
}
