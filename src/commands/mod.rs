//! One module per subcommand.

pub mod build;
pub mod check;
pub mod explain;
pub mod graph;
pub mod init;

use apim_topology::Checked;

/// Reads and checks a topology file, with the pattern check after the topology checks.
pub fn load(path: &str) -> Result<Checked, String> {
    let (name, bytes) = crate::input::read(path)?;
    let mut checked = apim_topology::check(&name, &bytes);
    let pattern = apim_patterns::check(&checked.topology);
    checked.extend(pattern);
    Ok(checked)
}
