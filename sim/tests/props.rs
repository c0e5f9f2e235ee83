//! Properties of the simulator over generated valid topologies, seeds and fault schedules:
//! it never panics, the same inputs give the same bytes, the order of tables and faults does
//! not matter, and without faults every invariant holds.

use apim_compiler::plan::Plan;
use apim_sim::report::Report;
use apim_sim::rng::Rng;
use apim_sim::run::{Options, simulate};
use apim_sim::scenario::{self, Scenario, Workload};
use apim_topology::SourceFile;
use apim_topology::synth::{self, Generated, Shape};
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = Shape> {
    (
        proptest::collection::vec(0usize..4, 4),
        proptest::collection::vec(1usize..4, 4),
        proptest::collection::vec(0usize..3, 4),
        proptest::collection::vec(0usize..3, 8),
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(assign, nodes, cluster_net, lb_net, nets, public, split_db, twin)| Shape {
                assign,
                nodes,
                cluster_net,
                lb_net,
                nets,
                public,
                split_db,
                twin,
            },
        )
}

fn plan_of(text: &str) -> Plan {
    let c = apim_topology::check_str("generated.toml", text);
    assert_eq!(c.errors(), 0, "{text}");
    Plan::of(&c.topology)
}

fn short() -> Scenario {
    Scenario {
        workload: Workload {
            duration_ms: 12_000,
            invoke_rate: 50.0,
            ..Workload::default()
        },
        faults: Vec::new(),
    }
}

fn report(plan: &Plan, s: &Scenario, seed: u64) -> String {
    let options = Options {
        seed,
        ..Options::default()
    };
    let r = Report::new(plan, s, seed, "replay", simulate(plan, s, &options));
    serde_json::to_string(&r).expect("json")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn the_same_topology_scenario_and_seed_give_the_same_bytes(s in shape(), seed in any::<u64>()) {
        let g: Generated = synth::varied(&s);
        let plan = plan_of(&g.natural());
        let drawn = apim_sim::explore::draw(&plan, &short(), &mut Rng::new(seed));
        let a = report(&plan, &drawn, seed);
        prop_assert_eq!(&a, &report(&plan, &drawn, seed));
    }

    #[test]
    fn without_faults_every_generated_topology_keeps_every_invariant(s in shape(), seed in any::<u64>()) {
        let plan = plan_of(&synth::varied(&s).natural());
        let out = simulate(&plan, &short(), &Options { seed, ..Options::default() });
        prop_assert_eq!(out.setup_error, None);
        prop_assert_eq!(out.violations, Vec::new());
    }

    #[test]
    fn the_order_of_tables_and_faults_does_not_matter(s in shape(), seed in any::<u64>(), rot in 0usize..8) {
        let g = synth::varied(&s);
        let n = g.sections.len();
        let order: Vec<usize> = (0..n).map(|i| (i + rot) % n).rev().collect();
        let (a, b) = (plan_of(&g.natural()), plan_of(&g.text(&order)));
        prop_assert_eq!(&a, &b);
        let drawn = apim_sim::explore::draw(&a, &short(), &mut Rng::new(seed));
        let text = drawn.to_toml();
        // The same faults, listed backwards.
        let (head, faults) = text.split_once("\n[[faults]]").map_or((text.as_str(), ""), |(h, f)| (h, f));
        let mut blocks: Vec<String> = faults.split("\n[[faults]]").filter(|b| !b.is_empty()).map(|b| format!("\n[[faults]]{b}")).collect();
        blocks.reverse();
        let reversed = format!("{head}{}", blocks.concat());
        let parse = |t: &str| scenario::parse(&SourceFile::new("s.toml", t), &a).expect("parses");
        let (x, y) = (parse(&text), parse(&reversed));
        prop_assert_eq!(&x, &y);
        prop_assert_eq!(report(&a, &x, seed), report(&b, &y, seed));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_scenario_parser_never_panics_on_any_text(text in "\\PC{0,200}") {
        let plan = plan_of(apim_patterns::find("clustered-external-store").expect("pattern").template);
        let _ = scenario::parse(&SourceFile::new("s.toml", text), &plan);
    }

    #[test]
    fn the_scenario_parser_never_panics_on_scenario_like_text(
        keys in proptest::collection::vec(
            prop_oneof![
                Just("kind"), Just("node"), Just("at"), Just("for"), Just("from"), Just("to"),
                Just("rate"), Just("added"), Just("one_way"), Just("cluster"), Just("database"),
                Just("balancer"), Just("duration"), Just("nodee"),
            ],
            0..6,
        ),
        values in proptest::collection::vec(
            prop_oneof![
                Just("\"crash\""), Just("\"gateway-1\""), Just("\"10s\""), Just("-5"), Just("1e400"),
                Just("\"loss\""), Just("\"internal\""), Just("2.5"), Just("true"), Just("\"99999999h\""),
                Just("[1, 2]"), Just("{ a = 1 }"), Just("\"partition\""),
            ],
            6,
        ),
        table in prop_oneof![Just("[[faults]]"), Just("[workload]"), Just("[[workload]]"), Just("[faults]")],
    ) {
        let plan = plan_of(apim_patterns::find("clustered-external-store").expect("pattern").template);
        let mut text = format!("{table}\n");
        for (k, v) in keys.iter().zip(&values) {
            text.push_str(&format!("{k} = {v}\n"));
        }
        if let Ok(s) = scenario::parse(&SourceFile::new("s.toml", text.as_str()), &plan) {
            // What parses reads back the same from its own TOML.
            let again = scenario::parse(&SourceFile::new("s.toml", s.to_toml()), &plan).expect("round trip");
            prop_assert_eq!(s, again);
        }
    }
}
