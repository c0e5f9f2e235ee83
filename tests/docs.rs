//! Documentation that must not drift from the code: the README's table of diagnostic codes, its
//! table of what each flow does during each database's outage (from the simulator's
//! single-failure matrix), and a `//!` line at the top of every Rust module saying what it holds.

use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- codes:begin -->\n";
const END: &str = "<!-- codes:end -->";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces what is between `begin` and `end` in the README with `text`, or, without
/// APIM_BLESS=1, fails when it differs.
fn keep_section(begin: &str, end: &str, text: &str, what: &str) {
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(b), Some(e)) = (readme.find(begin), readme.find(end)) else {
        panic!("README.md lacks the {begin:?} / {end:?} markers");
    };
    if &readme[b + begin.len()..e] == text {
        return;
    }
    if std::env::var_os("APIM_BLESS").is_some() {
        let updated = format!("{}{text}{}", &readme[..b + begin.len()], &readme[e..]);
        std::fs::write(&path, updated).expect("write README.md");
    } else {
        panic!("README.md's {what} is out of date; run `APIM_BLESS=1 cargo test --test docs`");
    }
}

/// Set APIM_BLESS=1 to rewrite the README's table from the simulator.
#[test]
fn readme_says_what_each_flow_does_during_each_database_outage() {
    let mut table = String::from(
        "| pattern | database | fails by | publish | subscribe | invoke |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for p in apim_patterns::PATTERNS {
        let checked = apim_topology::check_str(p.id, p.template);
        let plan = apim_compiler::plan::Plan::of(&checked.topology);
        let m = apim_sim::failover::database_matrix(&plan, &apim_sim::run::Options::default());
        assert_eq!(m.findings, Vec::<String>::new(), "{}", p.id);
        for row in &m.rows {
            let (how, database) = row.failure.split_once(' ').expect("kind and name");
            let how = match how {
                "database-outage" => "refusing",
                _ => "never answering",
            };
            // A flow the outage hurt, with how long it took to work again after the repair.
            let cells: Vec<String> = row
                .cells
                .iter()
                .map(|c| match c.recovered_after_ms {
                    Some(ms) => format!(
                        "{} (back {})",
                        c.simulated.as_str(),
                        apim_sim::scenario::format_ms(ms)
                    ),
                    None => c.simulated.as_str().to_string(),
                })
                .collect();
            table.push_str(&format!(
                "| {} | {database} | {how} | {} |\n",
                p.id,
                cells.join(" | ")
            ));
        }
    }
    keep_section(
        "<!-- outages:begin -->\n",
        "<!-- outages:end -->",
        &table,
        "outage table",
    );
}

/// Set APIM_BLESS=1 to rewrite the README's table from the code.
#[test]
fn readme_lists_every_diagnostic_code() {
    let codes: Vec<_> = apim_topology::codes::ALL
        .iter()
        .chain(apim_patterns::CODES)
        .chain(apim_pki::check::CODES)
        .chain(apim_sim::codes::ALL)
        .copied()
        .collect();
    let table = apim_topology::docs::reference(&codes);
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the {BEGIN:?} / {END:?} markers");
    };
    let current = &readme[b + BEGIN.len()..e];
    if current != table {
        if std::env::var_os("APIM_BLESS").is_some() {
            let updated = format!("{}{table}{}", &readme[..b + BEGIN.len()], &readme[e..]);
            std::fs::write(&path, updated).expect("write README.md");
        } else {
            panic!(
                "README.md's code table is out of date; run `APIM_BLESS=1 cargo test --test docs`"
            );
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != ".git" && name != "fixtures" {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_starts_with_a_line_saying_what_it_holds() {
    let mut files = Vec::new();
    rust_files(root(), &mut files);
    assert!(files.len() > 20, "found only {} Rust files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap_or_default()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

#[test]
fn architecture_describes_every_crate() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for krate in [
        "apim-topology",
        "apim-patterns",
        "apim-compiler",
        "apim-components",
        "apim-runtime",
        "apim-sim",
    ] {
        assert!(
            arch.contains(krate),
            "ARCHITECTURE.md does not mention {krate}"
        );
    }
}

/// The README's "Choosing a pattern" table is `apim compare --patterns` as it prints it; its
/// counts are the single-failure matrices' (checked flow by flow), and the patterns differ as
/// a reader expects. Set APIM_BLESS=1 to rewrite it.
#[test]
fn readme_compares_the_patterns_as_apim_compare_does() {
    use apim_sim::compare::{Comparison, column};
    use apim_sim::report::Verdict;
    let options = apim_sim::run::Options {
        replay: "apim compare".into(),
        ..apim_sim::run::Options::default()
    };
    let mut columns = Vec::new();
    let mut timing = (0, 0);
    for p in apim_patterns::PATTERNS {
        let checked = apim_topology::check_str(p.id, p.template);
        let plan = apim_compiler::plan::Plan::of(&checked.topology);
        let m = apim_sim::failover::matrix_jobs(&plan, &options, false, 2, |_, _, _| {});
        timing = (m.fault_at_ms, m.fault_for_ms);
        let c = column(p.id, &checked, &plan, &m, None);
        for f in &c.flows {
            let with = |v: Verdict| -> Vec<String> {
                m.rows
                    .iter()
                    .filter(|r| r.cells.iter().any(|x| x.flow == f.flow && x.simulated == v))
                    .map(|r| r.failure.clone())
                    .collect()
            };
            assert_eq!(f.broken_by, with(Verdict::Broken), "{} {}", p.id, f.flow);
            assert_eq!(
                f.degraded_by,
                with(Verdict::Degraded),
                "{} {}",
                p.id,
                f.flow
            );
        }
        columns.push(c);
    }
    let summary = |id: &str| {
        columns
            .iter()
            .find(|c| c.name == id)
            .map(|c| c.summary.clone())
            .unwrap_or_default()
    };
    assert!(
        summary("standalone").starts_with("any single node crash breaks every flow"),
        "{}",
        summary("standalone")
    );
    for id in ["clustered-internal", "clustered-external-store"] {
        assert!(
            summary(id).starts_with("survives any single node crash"),
            "{id}: {}",
            summary(id)
        );
    }
    assert!(
        summary("external-store").contains("cluster `store` (store)"),
        "{}",
        summary("external-store")
    );
    let c = Comparison {
        seed: options.seed,
        fault_at_ms: timing.0,
        fault_for_ms: timing.1,
        columns,
    };
    keep_section(
        "<!-- compare:begin -->\n",
        "<!-- compare:end -->",
        &format!("```text\n$ apim compare --patterns\n{}```\n", c.text()),
        "pattern comparison",
    );
}
