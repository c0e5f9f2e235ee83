//! The user documentation of diagnostic codes, generated from the code tables.

use crate::diagnostic::{Code, Severity};

/// A Markdown table of `codes`: code, name, what it catches, what fixes it.
pub fn reference(codes: &[&Code]) -> String {
    let mut out = String::from(
        "| code | name | what it catches | what fixes it |\n| --- | --- | --- | --- |\n",
    );
    for c in codes {
        let sev = match c.severity {
            Severity::Error => "",
            Severity::Warning => " (warning)",
        };
        out.push_str(&format!(
            "| {} | `{}`{sev} | {} | {} |\n",
            c.id,
            c.name,
            c.summary.replace('|', "\\|"),
            c.fix.replace('|', "\\|")
        ));
    }
    out
}

/// A longer text for `apim explain CODE`.
pub fn explain(c: &Code) -> String {
    format!(
        "{} {} ({})\n\n{}\n\nHow to fix it: {}\n",
        c.id,
        c.name,
        c.severity.as_str(),
        c.summary,
        c.fix
    )
}
