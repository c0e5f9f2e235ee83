//! `lb/<lb>/haproxy.cfg`: the balancer as HAProxy 2.6: TLS ended with the balancer's (or the
//! edge) certificate and made anew to each node, checked against the deployment CA; internal
//! listeners passed through (`mode tcp`), so the caller's certificate reaches the node; active
//! HTTPS checks on the node admin `/ready`, cookie insertion for the portals, and `init-addr
//! last,libc,none` so a host name that does not resolve yet does not stop it from starting.
//! HAProxy 2.6 reads the key of `crt FILE` from `FILE.key` (`apim certs` links it there).

use super::header;
use crate::plan::{BalancerPlan, BalancerRoute, Plan, RouteListener, component_name};
use std::fmt::Write;

fn name(r: &BalancerRoute) -> String {
    format!("{}_{}", r.component.as_str().replace('-', "_"), r.port)
}

pub fn render(plan: &Plan, b: &BalancerPlan) -> String {
    render_as(plan, b, &format!("HAProxy config of balancer `{}`", b.name))
}

/// The config, its header saying what it is.
pub fn render_as(plan: &Plan, b: &BalancerPlan, what: &str) -> String {
    let mut s = header("#", what, &plan.deployment);
    s.push_str("# Check: haproxy -c -f haproxy.cfg    Run: haproxy -f haproxy.cfg\n");
    s.push_str(
        "# The key of each `crt FILE` is read from `FILE.key` (apim certs links it there).\n\n",
    );
    s.push_str("global\n    log stdout format raw local0\n    maxconn 4096\n    ssl-default-bind-options ssl-min-ver TLSv1.2\n    ssl-default-server-options ssl-min-ver TLSv1.2\n\n");
    let (connect, read) = b.routes.first().map_or((2000, 60000), |r| {
        (r.timeouts.connect_ms, r.timeouts.read_ms)
    });
    let health = b.routes.first().map(|r| r.health.clone());
    let _ = writeln!(
        s,
        "defaults\n    mode http\n    log global\n    option httplog\n    option forwardfor\n    option redispatch\n    retries 1\n    timeout connect {connect}ms\n    timeout client {read}ms\n    timeout server {read}ms"
    );
    if let Some(h) = &health {
        let _ = writeln!(
            s,
            "    default-server init-addr last,libc,none inter {}ms fall {} rise {}",
            h.interval_ms, h.fall, h.rise
        );
    }
    let front_cert = b
        .edge
        .as_ref()
        .map_or(b.tls.cert.as_str(), |e| e.cert.as_str());
    // Every connection to a node is TLS, its certificate checked against the CA and the name
    // its component's nodes share; the balancer shows its own certificate.
    let to_nodes = |r: &BalancerRoute| {
        format!(
            " ssl verify required ca-file {} verifyhost {} crt {}",
            b.tls.ca,
            component_name(&plan.deployment, r.component),
            b.tls.cert
        )
    };
    for r in &b.routes {
        let n = name(r);
        if r.listener == RouteListener::Internal {
            // Passed through: the node's internal listener sees the caller's own certificate.
            let _ = writeln!(
                s,
                "\nfrontend {n}\n    mode tcp\n    option tcplog\n    bind :{}\n    default_backend {n}\n\nbackend {n}\n    mode tcp\n    balance roundrobin\n    option httpchk GET {}\n    http-check expect status 200",
                r.port, r.health.path
            );
            for u in &r.upstream {
                let address = super::nginx::address(&u.host, u.port);
                let _ = writeln!(
                    s,
                    "    server {} {address} check port {} check-ssl{}",
                    u.node,
                    u.admin_port,
                    to_nodes(r).replace(" ssl ", " ")
                );
            }
            continue;
        }
        let _ = writeln!(
            s,
            "\nfrontend {n}\n    bind :{} ssl crt {front_cert}\n    http-request set-header X-Forwarded-Proto https\n    http-request set-header X-Forwarded-Host %[req.hdr(host)]\n    http-request set-header X-Forwarded-Port %[dst_port]\n    default_backend {n}",
            r.port
        );
        let _ = writeln!(
            s,
            "\nbackend {n}\n    balance roundrobin\n    option httpchk GET {}\n    http-check expect status 200",
            r.health.path
        );
        if r.sticky {
            s.push_str("    cookie APIM_NODE insert indirect nocache\n");
        }
        for u in &r.upstream {
            let address = super::nginx::address(&u.host, u.port);
            let cookie = if r.sticky {
                format!(" cookie {}", u.node)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "    server {} {address} check port {}{cookie}{}",
                u.node,
                u.admin_port,
                to_nodes(r)
            );
        }
    }
    s
}
