//! Diagnostics: a stable code, a message, labelled spans and a hint.

use crate::source::Span;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One diagnostic code: what it catches, why that matters and how to fix it.
///
/// Every code lives in exactly one static; [`crate::codes::ALL`] lists them all and the
/// user documentation is generated from that list.
#[derive(Debug)]
pub struct Code {
    /// Stable identifier, such as `E040`. Never reused for another meaning.
    pub id: &'static str,
    /// A short kebab-case name, such as `hop-blocked`.
    pub name: &'static str,
    pub severity: Severity,
    /// What it catches, one sentence.
    pub summary: &'static str,
    /// What fixes it, one sentence.
    pub fix: &'static str,
}

impl PartialEq for Code {
    fn eq(&self, other: &Code) -> bool {
        self.id == other.id
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

impl Label {
    pub fn new(span: Span, text: impl Into<String>) -> Label {
        Label {
            span,
            text: text.into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub code: &'static Code,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(code: &'static Code, message: impl Into<String>, primary: Label) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            primary,
            secondary: Vec::new(),
            hint: None,
        }
    }

    pub fn with_secondary(mut self, label: Label) -> Diagnostic {
        self.secondary.push(label);
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn severity(&self) -> Severity {
        self.code.severity
    }

    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }
}

/// Sorts diagnostics the way a reader walks the file, with ties broken by content so the
/// order never depends on the order rules ran in.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (a.primary.span, a.code.id, &a.message).cmp(&(b.primary.span, b.code.id, &b.message))
    });
}
