//! One module per subcommand.

pub mod build;
pub mod certs;
pub mod check;
pub mod compare;
pub mod drill;
pub mod explain;
pub mod graph;
pub mod init;
pub mod run;
pub mod sim;

use apim_topology::Checked;

/// Reads and checks a topology file, with the pattern check after the topology checks.
pub fn load(path: &str) -> Result<Checked, String> {
    let (name, bytes) = crate::input::read(path)?;
    let mut checked = apim_topology::check(&name, &bytes);
    let pattern = apim_patterns::check(&checked.topology);
    checked.extend(pattern);
    Ok(checked)
}

/// Reads and checks a topology that a command needs free of errors. Errors are printed to
/// standard error, saying that nothing was `done`; the outcome says how the command ends.
pub fn load_clean(path: &str, done: &str) -> Result<Checked, crate::Outcome> {
    let checked = load(path).map_err(|e| {
        crate::output::error(&e);
        crate::Outcome::Usage
    })?;
    if checked.errors() == 0 {
        return Ok(checked);
    }
    print_errors(&checked, &checked.source.name, done);
    Err(crate::Outcome::Failure)
}

/// Prints a topology's errors to standard error as `apim check` does, saying that nothing was
/// `done` because `name` has them.
pub fn print_errors(checked: &Checked, name: &str, done: &str) {
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    eprint!(
        "{}",
        apim_topology::render::human(&checked.source, &errors, false)
    );
    crate::output::error(&format!(
        "`{name}` has errors; {done} (apim check shows them all)"
    ));
}
