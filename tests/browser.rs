//! The HTML reports in a real browser: each kind (a scenario's report, the single-failure
//! matrix, `apim compare`) is opened in headless Chromium (Debian's `chromium`, which
//! `scripts/test` installs), must load without a console error or a Content-Security-Policy
//! violation, and must hold its picture and tables once rendered (the DOM the browser built).
//! A screenshot of each is kept in `target/tmp/screenshots/`. The pages are deterministic:
//! the same input writes the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn apim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apim"))
}

/// The browser, or why the tests cannot run (they must where `APIM_TEST_BROWSER=required`).
fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("APIM_TEST_BROWSER").as_deref() != Ok("required"),
            "the browser tests must run here, and `chromium` is not installed"
        );
        eprintln!("not run: `chromium` is not installed");
        return None;
    }
    Some("chromium")
}

/// Opens `page` headless; (what the console said, the DOM after rendering). Keeps a
/// screenshot as `name`.png.
fn open(browser: &str, page: &Path, name: &str) -> (Vec<String>, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let url = format!("file://{}", page.display());
    let run = |extra: &[String]| {
        let o = Command::new(browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1000,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let shot = run(&[format!(
        "--screenshot={}",
        shots.join(format!("{name}.png")).display()
    )]);
    let console: Vec<String> = String::from_utf8_lossy(&shot.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let dom = run(&["--dump-dom".to_string()]);
    (console, String::from_utf8_lossy(&dom.stdout).into_owned())
}

/// Runs `apim` with `args`, which write the page at `out`; returns its bytes.
fn write_page(args: &[&str], dir: &Path, out: &Path) -> Vec<u8> {
    let o = apim()
        .args(args)
        .arg("--html")
        .arg(out)
        .current_dir(dir)
        .output()
        .expect("apim");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).expect("the page")
}

fn pattern_file(dir: &Path, pattern: &str) -> PathBuf {
    let file = dir.join(format!("{pattern}.toml"));
    let o = apim()
        .args(["init", "--pattern", pattern, "--output"])
        .arg(&file)
        .output()
        .expect("apim init");
    assert!(o.status.success());
    file
}

#[test]
fn every_kind_of_report_renders_in_a_browser_without_errors() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let topology = pattern_file(d, "external-store");
    let topology = topology.to_str().expect("utf-8 path");
    let scenario = d.join("scenario.toml");
    std::fs::write(
        &scenario,
        "[workload]\nduration = \"30s\"\ninvoke_rate = 50\n\n[[faults]]\nkind = \"crash\"\nnode = \"publisher-1\"\nat = \"5s\"\nfor = \"10s\"\n\n[[faults]]\nkind = \"database-outage\"\ndatabase = \"apim\"\nat = \"12s\"\nfor = \"10s\"\n",
    )
    .expect("scenario");
    let scenario = scenario.to_str().expect("utf-8 path");

    let report = d.join("report.html");
    let first = write_page(&["sim", topology, "--scenario", scenario], d, &report);
    let again = write_page(
        &["sim", topology, "--scenario", scenario],
        d,
        &d.join("again.html"),
    );
    assert!(first == again, "the same run writes the same page");
    let (console, dom) = open(browser, &report, "scenario-report");
    assert_eq!(console, Vec::<String>::new(), "console of the report");
    assert!(dom.contains(r#"class="topology""#), "the picture");
    assert!(
        dom.contains(r#"class="cluster failed" data-name="publisher-1""#),
        "the crashed node's cluster is marked"
    );
    assert!(
        dom.contains(r#"class="database failed" data-name="apim""#),
        "the database out is marked"
    );
    assert!(
        dom.contains(r#"class="hop publish broken""#),
        "the crashed publisher's hops are marked"
    );
    assert!(
        dom.contains(r#"class="hop subscribe""#),
        "the other flows' hops"
    );
    assert_eq!(
        dom.matches(r#"<g class="fault">"#).count(),
        2,
        "a row per fault"
    );
    assert!(dom.contains("<table"), "the tables");

    let matrix = d.join("matrix.html");
    let first = write_page(
        &["sim", topology, "--single-failures", "--jobs", "2"],
        d,
        &matrix,
    );
    let again = write_page(
        &["sim", topology, "--single-failures"],
        d,
        &d.join("matrix-again.html"),
    );
    assert!(
        first == again,
        "the same matrix writes the same page, on one thread or two"
    );
    let (console, dom) = open(browser, &matrix, "single-failures");
    assert_eq!(console, Vec::<String>::new(), "console of the matrix");
    assert!(dom.contains(r#"class="topology""#));
    assert!(dom.contains("crash publisher-1"), "a row per failure");
    assert!(
        dom.matches("<details>").count() >= 20,
        "a picture per failure"
    );

    let compare = d.join("compare.html");
    let first = write_page(
        &[
            "compare",
            topology,
            "--patterns",
            "standalone",
            "--jobs",
            "2",
        ],
        d,
        &compare,
    );
    let (console, dom) = open(browser, &compare, "compare");
    assert_eq!(console, Vec::<String>::new(), "console of the comparison");
    assert!(dom.contains(r#"id="comparison""#), "the table");
    assert_eq!(
        dom.matches(r#"class="topology""#).count(),
        2,
        "a picture each"
    );
    let again = write_page(
        &[
            "compare",
            topology,
            "--patterns",
            "standalone",
            "--jobs",
            "2",
        ],
        d,
        &d.join("compare-again.html"),
    );
    assert!(first == again, "the same comparison writes the same page");
}

/// The check itself can fail: a page that breaks the policy is caught (so a clean console
/// above means something).
#[test]
fn a_page_that_runs_a_script_is_caught() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("bad.html");
    let report = std::fs::read_to_string(
        // Any of apim's pages, with a script added: the policy forbids it.
        {
            let out = dir.path().join("ok.html");
            let topology = pattern_file(dir.path(), "standalone");
            write_page(
                &["sim", topology.to_str().expect("utf-8"), "--duration", "5s"],
                dir.path(),
                &out,
            );
            out
        },
    )
    .expect("page");
    std::fs::write(
        &page,
        report.replace("</body>", "<script>document.title = 'x'</script></body>"),
    )
    .expect("write");
    let (console, _) = open(browser, &page, "policy-violation");
    assert!(
        console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{console:?}"
    );
}
