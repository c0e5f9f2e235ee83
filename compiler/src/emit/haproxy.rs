//! `lb/<lb>/haproxy.cfg`: the balancer as HAProxy 2.6: active HTTP checks on the node admin
//! `/health`, cookie insertion for the portals, and `init-addr last,libc,none` so a host name
//! that does not resolve yet does not stop it from starting.

use super::header;
use crate::plan::{BalancerPlan, BalancerRoute, Plan};
use std::fmt::Write;

fn name(r: &BalancerRoute) -> String {
    format!("{}_{}", r.component.as_str().replace('-', "_"), r.port)
}

pub fn render(plan: &Plan, b: &BalancerPlan) -> String {
    let mut s = header(
        "#",
        &format!("HAProxy config of balancer `{}`", b.name),
        &plan.deployment,
    );
    s.push_str("# Check: haproxy -c -f haproxy.cfg    Run: haproxy -f haproxy.cfg\n\n");
    s.push_str("global\n    log stdout format raw local0\n    maxconn 4096\n\n");
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
    for r in &b.routes {
        let n = name(r);
        let _ = writeln!(
            s,
            "\nfrontend {n}\n    bind :{}\n    http-request set-header X-Forwarded-Proto http\n    http-request set-header X-Forwarded-Host %[req.hdr(host)]\n    http-request set-header X-Forwarded-Port %[dst_port]\n    default_backend {n}",
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
                "    server {} {address} check port {}{cookie}",
                u.node, u.admin_port
            );
        }
    }
    s
}
