//! E041: a balancer that cannot reach a node it fronts.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::reach;

code!(
    CODE,
    "E041",
    "balancer-cannot-reach",
    Error,
    "A load balancer cannot reach the nodes of a cluster it fronts, on a component port or the node admin port its health checks use.",
    "Allow the ports from the balancer (or its network) to the cluster (or its network) in [[firewall]], or move the balancer."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let firewall = reach::Firewall::of(t);
    for lb in t.load_balancers.values() {
        let Some(lb_net) = t.network_of(lb.network.as_ref()) else {
            continue;
        };
        // Once per balancer: computed per front, it made a fleet's check quadratic.
        let listens = reach::balancer_ports(t, lb);
        for f in &lb.fronts {
            let Some(c) = t.clusters.get(&f.value) else {
                continue;
            };
            let Some(c_net) = t.network_of(c.network.as_ref()) else {
                continue;
            };
            let mut ports: Vec<u16> = c
                .components
                .iter()
                .map(|comp| c.port(comp.value))
                .chain(
                    c.components
                        .iter()
                        .any(|comp| {
                            listens
                                .binary_search(&(
                                    c.internal_port(),
                                    comp.value,
                                    crate::flows::Listener::Internal,
                                ))
                                .is_ok()
                        })
                        .then(|| c.internal_port()),
                )
                .chain([c.admin_port()])
                .filter(|&p| {
                    !firewall.allows_between(
                        reach::Party::named(&lb_net.name, &lb.name),
                        reach::Party::named(&c_net.name, &c.name),
                        p,
                    )
                })
                .collect();
            ports.dedup();
            if ports.is_empty() {
                continue;
            }
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let mut d = Diagnostic::new(
                &CODE,
                format!(
                    "balancer `{}` (network `{}`) cannot reach the nodes of `{}` (network `{}`) on port{} {}",
                    lb.name,
                    lb_net.name,
                    c.name,
                    c_net.name,
                    if ports.len() > 1 { "s" } else { "" },
                    list.join(", ")
                ),
                Label::new(f.span, format!("`{}` fronts `{}`", lb.name, c.name)),
            );
            if let Some(n) = &c.network {
                d = d.with_secondary(Label::new(
                    n.span,
                    format!("`{}` is on `{}`", c.name, c_net.name),
                ));
            }
            out.push(d.with_hint(format!(
                "add [[firewall]] from = \"{}\", to = \"{}\", ports = [{}] (the admin port carries health checks)",
                lb.name,
                c.name,
                list.join(", ")
            )));
        }
    }
}
