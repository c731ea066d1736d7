//! Source spans and user-facing diagnostics.
//!
//! Owns [`Span`] (a byte range in a source text) and [`Diagnostic`] (a code, a
//! message, the primary span and an optional hint), plus rendering a
//! diagnostic as `line:col: message` and locating a byte offset as line and
//! column. It depends on no other watchpost crate, so the KQL front end, the
//! config loader and the connectors can all report problems the same way.

use std::fmt;

/// A half-open byte range `[start, end)` into a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// Creates a span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end, "span start after end");
        Span { start: start as u32, end: end as u32 }
    }

    /// Returns the smallest span covering both `self` and `other`.
    pub fn cover(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// Returns the text under the span, or `""` when it is out of range.
    pub fn text(self, source: &str) -> &str {
        source.get(self.start as usize..self.end as usize).unwrap_or("")
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem a diagnostic reports; mirrors the Kusto split between
/// syntax and semantic errors, which the query API exposes as `innererror.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosticKind {
    Syntax,
    Semantic,
}

impl DiagnosticKind {
    /// The Log Analytics `innererror.code` for this kind.
    pub fn api_code(self) -> &'static str {
        match self {
            DiagnosticKind::Syntax => "SyntaxError",
            DiagnosticKind::Semantic => "SemanticError",
        }
    }
}

/// One problem found in user input, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// A stable code such as `KQL1001`.
    pub code: &'static str,
    pub kind: DiagnosticKind,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Creates a syntax error.
    pub fn syntax(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            kind: DiagnosticKind::Syntax,
            severity: Severity::Error,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// Creates a semantic error (unknown name, wrong type...).
    pub fn semantic(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            kind: DiagnosticKind::Semantic,
            severity: Severity::Error,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// Adds a hint telling the user how to fix the problem.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Renders `line:col: CODE: message (hint)` against `source`.
    pub fn render(&self, source: &str) -> String {
        let position = LineCol::locate(source, self.span.start as usize);
        let mut out = format!("{}:{}: {}: {}", position.line, position.column, self.code, self.message);
        if let Some(hint) = &self.hint {
            out.push_str(" (hint: ");
            out.push_str(hint);
            out.push(')');
        }
        out
    }
}

/// A 1-based line and column (counted in characters) in a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    pub line: u32,
    pub column: u32,
}

impl LineCol {
    /// Locates byte `offset` in `source`; offsets past the end map to the end.
    pub fn locate(source: &str, offset: usize) -> LineCol {
        let offset = offset.min(source.len());
        let mut line = 1;
        let mut column = 1;
        for (idx, ch) in source.char_indices() {
            if idx >= offset {
                break;
            }
            if ch == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        LineCol { line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let source = "T\n| where x\n| take 1";
        assert_eq!(LineCol::locate(source, 0), LineCol { line: 1, column: 1 });
        assert_eq!(LineCol::locate(source, 4), LineCol { line: 2, column: 3 });
        let diag = Diagnostic::syntax("KQL1000", Span::new(10, 11), "boom").with_hint("fix it");
        assert_eq!(diag.render(source), "2:9: KQL1000: boom (hint: fix it)");
    }
}
