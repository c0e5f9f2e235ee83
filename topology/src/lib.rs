//! apim-topology: the topology model, TOML parsing with source spans, the checker, the flows
//! table and graph export.
//!
//! This crate does no I/O: it takes the bytes of a file and returns the model and its
//! diagnostics; reading files and printing belong to the command line.

pub mod codes;
pub mod diagnostic;
pub mod docs;
pub mod flows;
pub mod graph;
pub mod kubernetes;
pub mod model;
pub mod parse;
pub mod reach;
pub mod render;
pub mod rules;
pub mod source;
pub mod suggest;
pub mod synth;
pub mod timing;
pub mod vocab;

pub use diagnostic::{Code, Diagnostic, Label, Severity};
pub use model::Topology;
pub use source::{SourceFile, Span, Spanned};

/// A file after checking: its text, the model built from it, and every diagnostic.
#[derive(Debug)]
pub struct Checked {
    pub source: SourceFile,
    pub topology: Topology,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// Adds diagnostics from a later stage (the pattern check) and keeps the file order.
    pub fn extend(&mut self, more: impl IntoIterator<Item = Diagnostic>) {
        self.diagnostics.extend(more);
        diagnostic::sort(&mut self.diagnostics);
    }
}

/// Parses and checks the bytes of a topology file named `name`.
pub fn check(name: &str, bytes: &[u8]) -> Checked {
    match std::str::from_utf8(bytes) {
        Ok(text) => check_str(name, text),
        Err(e) => {
            let source = SourceFile::new(name, String::from_utf8_lossy(bytes).into_owned());
            let at = Span::new(e.valid_up_to(), e.valid_up_to() + 1);
            let d = Diagnostic::new(
                &codes::INVALID_TOML,
                "the file is not valid UTF-8",
                Label::new(at, "invalid byte here"),
            )
            .with_hint("a topology file is UTF-8 text; is this the right file?");
            Checked {
                source,
                topology: Topology::default(),
                diagnostics: vec![d],
            }
        }
    }
}

/// Parses and checks a topology held as text.
pub fn check_str(name: &str, text: &str) -> Checked {
    let (topology, mut diagnostics) = match parse::parse(text) {
        Ok((topology, mut diagnostics)) => {
            diagnostics.extend(rules::run(&topology));
            (topology, diagnostics)
        }
        Err(syntax) => (Topology::default(), syntax),
    };
    diagnostic::sort(&mut diagnostics);
    Checked {
        source: SourceFile::new(name, text),
        topology,
        diagnostics,
    }
}
