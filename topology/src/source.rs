//! Source files, byte spans and their line/column positions.

use std::ops::Range;

/// A byte range in a source file. Kept small and `Copy` so every model item can carry several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    pub fn range(self) -> Range<usize> {
        self.start..self.end
    }
}

impl From<Range<usize>> for Span {
    fn from(r: Range<usize>) -> Span {
        Span::new(r.start, r.end)
    }
}

/// A value together with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Spanned<T> {
        Spanned { value, span }
    }
}

/// A topology file as read: its display name and its text.
///
/// Files that are not valid UTF-8 are kept as lossy text so diagnostics can still show them.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

/// A 1-based line and column (counted in characters), plus the byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The position of a byte offset; offsets past the end or inside a character are clamped.
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        Position {
            line: line + 1,
            column,
            offset,
        }
    }

    pub fn snippet(&self, span: Span) -> &str {
        let start = self.position(span.start).offset;
        let end = self.position(span.end).offset.max(start);
        &self.text[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let f = SourceFile::new("t.toml", "ab\nçd = 1\n");
        assert_eq!(f.position(0).line, 1);
        assert_eq!(
            f.position(3),
            Position {
                line: 2,
                column: 1,
                offset: 3
            }
        );
        // 'ç' is two bytes: 'd' is the second character of line 2.
        assert_eq!(f.position(5).column, 2);
        // Inside a character, and past the end, clamp instead of panicking.
        assert_eq!(f.position(4).column, 1);
        assert_eq!(f.position(999).line, 3);
    }
}
