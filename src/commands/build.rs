//! `apim build` and `apim plan`: write every output of a topology, or show what that would change.

use crate::Outcome;
use crate::outdir::{self, Kind};
use crate::output::{self, Format};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// Build every output of a topology into a folder.
///
/// Per node: nodes/<node>.toml (for `apim node`) and wso2/<node>/deployment.toml. Per balancer:
/// lb/<lb>/rules.toml, nginx.conf and haproxy.cfg. For the deployment: k8s/, compose.yaml,
/// graph.dot, graph.mmd and plan.json. Files a previous build wrote and this one does not are
/// deleted; other files in the folder are left alone.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// The topology file (`-` reads standard input).
    file: String,
    /// The output folder.
    #[arg(long, short, default_value = "out")]
    output: String,
    #[command(flatten)]
    workload: WorkloadArgs,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// What the Kubernetes and Compose outputs run; each flag overrides `[kubernetes]` in the
/// topology, which overrides the default.
#[derive(clap::Args)]
#[command(next_help_heading = "Kubernetes and Compose")]
pub struct WorkloadArgs {
    /// The image every node's container runs [default: apim:<this version>]; build it with
    /// scripts/image or the Containerfile, push it where the cluster pulls from.
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// CPU each node's container requests [default: 250m].
    #[arg(long, value_name = "QUANTITY")]
    cpu_request: Option<String>,
    /// Memory each node's container requests [default: 128Mi].
    #[arg(long, value_name = "QUANTITY")]
    memory_request: Option<String>,
    /// The CPU limit of each node's container [default: 2].
    #[arg(long, value_name = "QUANTITY")]
    cpu_limit: Option<String>,
    /// The memory limit of each node's container [default: 512Mi].
    #[arg(long, value_name = "QUANTITY")]
    memory_limit: Option<String>,
}

impl WorkloadArgs {
    fn overrides(&self) -> apim_compiler::Overrides {
        let resources = [
            ("cpu_request", &self.cpu_request),
            ("memory_request", &self.memory_request),
            ("cpu_limit", &self.cpu_limit),
            ("memory_limit", &self.memory_limit),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.clone()?)))
        .collect();
        apim_compiler::Overrides {
            image: self.image.clone(),
            resources,
        }
    }
}

/// Show what `apim build` would create, change or delete in an output folder.
///
/// Exit status: 0 no changes, 2 changes, 1 errors (including usage errors), like
/// `terraform plan -detailed-exitcode`.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The topology file (`-` reads standard input).
    file: String,
    /// The output folder to compare with.
    #[arg(long, short, default_value = "out")]
    output: String,
    #[command(flatten)]
    workload: WorkloadArgs,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// The files of a topology that checks without errors; otherwise the errors are printed.
fn compile(
    file: &str,
    workload: &WorkloadArgs,
) -> Result<(apim_compiler::Output, apim_topology::Checked), Outcome> {
    let checked = super::load_clean(file, "nothing was built")?;
    let overrides = workload.overrides();
    let problems = overrides.problems(&checked.topology);
    if !problems.is_empty() {
        for (flag, problem) in &problems {
            output::error(&format!("{flag}: {problem}"));
        }
        return Err(Outcome::Usage);
    }
    let out = apim_compiler::build_with(&checked.topology, &overrides);
    Ok((out, checked))
}

/// Each warning with the place in the topology it is about: `file:line:column`.
fn located(out: &apim_compiler::Output, checked: &apim_topology::Checked) -> Vec<(String, String)> {
    out.warnings
        .iter()
        .map(|w| {
            let at = w.span(&checked.topology).map_or_else(
                || checked.source.name.clone(),
                |s| {
                    let p = checked.source.position(s.start);
                    format!("{}:{}:{}", checked.source.name, p.line, p.column)
                },
            );
            (w.message.clone(), at)
        })
        .collect()
}

fn counts(changes: &[outdir::Change]) -> BTreeMap<&'static str, usize> {
    let mut c: BTreeMap<&str, usize> = [("create", 0), ("change", 0), ("delete", 0)].into();
    for ch in changes {
        *c.entry(ch.kind.as_str()).or_default() += 1;
    }
    c
}

pub fn build(args: BuildArgs) -> Outcome {
    let (out, checked) = match compile(&args.file, &args.workload) {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    let warnings = located(&out, &checked);
    let dir = Path::new(&args.output);
    let changes = outdir::changes(dir, &out.files);
    if let Err(e) = outdir::apply(dir, &out.files, &changes) {
        output::error(&e);
        return Outcome::Failure;
    }
    let c = counts(&changes);
    match args.format {
        Format::Json => {
            let report = json!({
                "output": args.output,
                "files": out.files.len(),
                "created": c["create"], "changed": c["change"], "deleted": c["delete"],
                "warnings": warnings
                    .iter()
                    .map(|(message, at)| json!({"message": message, "at": at}))
                    .collect::<Vec<_>>(),
            });
            println!("{report}");
        }
        Format::Human => {
            for (message, at) in &warnings {
                eprintln!("warning: {message}\n  --> {at}");
            }
            println!(
                "built {} files in {} ({} created, {} changed, {} deleted)",
                out.files.len(),
                args.output,
                c["create"],
                c["change"],
                c["delete"]
            );
        }
    }
    Outcome::Success
}

pub fn plan(args: PlanArgs) -> Outcome {
    let (out, _) = match compile(&args.file, &args.workload) {
        Ok(o) => o,
        // Exit 2 means changes here; every failure is 1.
        Err(_) => return Outcome::Failure,
    };
    let changes = outdir::changes(Path::new(&args.output), &out.files);
    let c = counts(&changes);
    match args.format {
        Format::Json => {
            let list: Vec<_> = changes
                .iter()
                .map(|ch| json!({"path": ch.path, "action": ch.kind.as_str()}))
                .collect();
            let report = json!({
                "output": args.output,
                "create": c["create"], "change": c["change"], "delete": c["delete"],
                "changes": list,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        Format::Human => {
            for ch in &changes {
                print!("{}", outdir::diff(ch));
            }
            println!(
                "plan: {} to create, {} to change, {} to delete in {}",
                c["create"], c["change"], c["delete"], args.output
            );
        }
    }
    if changes
        .iter()
        .any(|ch| matches!(ch.kind, Kind::Create | Kind::Change | Kind::Delete))
    {
        Outcome::Changes
    } else {
        Outcome::Success
    }
}
