//! Diagnostics for people (miette's graphical report) and for scripts (JSON).

use crate::diagnostic::{Diagnostic, Severity};
use crate::source::SourceFile;
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};
use serde_json::{Value, json};

/// Renders diagnostics as miette reports: file:line:column, the source lines, labels, a hint.
pub fn human(source: &SourceFile, diagnostics: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for d in diagnostics {
        let rendered = if readable(source, d) {
            let report = miette::Report::new(to_miette(source, d))
                .with_source_code(NamedSource::new(&source.name, source.text.clone()));
            handler.render_report(&mut out, report.as_ref())
        } else {
            // Only the position: showing a binary line or a 50 KB one helps nobody.
            let p = source.position(d.primary.span.start);
            let mut m = to_miette(source, d);
            m.labels = None;
            let report = miette::Report::new(m);
            let result = handler.render_report(&mut out, report.as_ref());
            out.push_str(&format!(
                "  at {}:{}:{} ({})\n",
                source.name, p.line, p.column, d.primary.text
            ));
            result
        };
        if rendered.is_err() {
            out.push_str(&format!("{}: {}\n", d.code, d.message));
        }
        out.push('\n');
    }
    out
}

/// Lines longer than this are not shown in a snippet.
const MAX_SNIPPET_LINE: usize = 300;

/// Whether every line a diagnostic points at is short, printable text.
fn readable(source: &SourceFile, d: &Diagnostic) -> bool {
    std::iter::once(&d.primary).chain(&d.secondary).all(|l| {
        let start = source.position(l.span.start).offset;
        let line_start = source.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = source.text[line_start..]
            .split('\n')
            .next()
            .unwrap_or_default();
        line.len() <= MAX_SNIPPET_LINE
            && !line
                .chars()
                .any(|c| (c.is_control() && c != '\t' && c != '\r') || c == '\u{fffd}')
    })
}

fn to_miette(source: &SourceFile, d: &Diagnostic) -> MietteDiagnostic {
    let clamp = |s: crate::Span| {
        let start = source.position(s.start).offset;
        let end = source.position(s.end).offset.max(start);
        (start, end - start)
    };
    let mut labels = vec![LabeledSpan::new_primary_with_span(
        Some(d.primary.text.clone()),
        clamp(d.primary.span),
    )];
    labels.extend(
        d.secondary
            .iter()
            .map(|l| LabeledSpan::new_with_span(Some(l.text.clone()), clamp(l.span))),
    );
    let mut m = MietteDiagnostic::new(d.message.clone())
        .with_code(d.code.id)
        .with_severity(match d.severity() {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
        .with_labels(labels);
    if let Some(h) = &d.hint {
        m = m.with_help(h.clone());
    }
    m
}

/// One diagnostic as JSON: code, severity, message, file, positions, labels and hint.
pub fn json(source: &SourceFile, d: &Diagnostic) -> Value {
    let label = |l: &crate::Label, primary: bool| {
        let start = source.position(l.span.start);
        let end = source.position(l.span.end);
        json!({
            "primary": primary,
            "message": l.text,
            "start": { "line": start.line, "column": start.column, "offset": start.offset },
            "end": { "line": end.line, "column": end.column, "offset": end.offset },
        })
    };
    let primary = label(&d.primary, true);
    let mut labels = vec![primary.clone()];
    labels.extend(d.secondary.iter().map(|l| label(l, false)));
    json!({
        "code": d.code.id,
        "name": d.code.name,
        "severity": d.severity().as_str(),
        "message": d.message,
        "file": source.name,
        "start": primary["start"],
        "end": primary["end"],
        "labels": labels,
        "hint": d.hint,
    })
}
