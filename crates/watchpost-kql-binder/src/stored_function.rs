//! Stored (saved) functions: functions kept in the workspace, found through
//! [`TableCatalog::function`](crate::TableCatalog::function), and used
//! wherever a table or a `let` function is.
//!
//! A stored function is parsed from its text when a query first calls it
//! and then inlined exactly like a `let` function (`user_function.rs`),
//! with two differences: its body sees only its parameters and the
//! workspace (not the caller's `let`s), and a problem inside it is reported
//! at the call, prefixed with the function's name, because its own text is
//! not part of the query. A `let` name shadows a stored function, and a
//! table shadows a stored function of the same name.

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{FunctionDef, LetValue, Statement};

use crate::{Binder, StoredFunction};

/// Parses the text of a stored function into a definition. The error is a
/// message naming the problem and the text it was found at.
pub fn parse_stored_function(stored: &StoredFunction) -> Result<FunctionDef, String> {
    let body = stored.body.trim_end().trim_end_matches(';');
    let prefix = "let __stored = (";
    let text = format!("{prefix}{}) {{\n{body}\n}};\nprint 0", stored.parameters);
    let (query, diagnostics) = watchpost_kql_syntax::parse(&text);
    if let Some(first) = diagnostics.first() {
        let near = first.span.text(&text).trim();
        return Err(if near.is_empty() { first.message.clone() } else { format!("{} (at `{near}`)", first.message) });
    }
    match query.statements.first() {
        Some(Statement::Let(let_stmt)) => match &let_stmt.value {
            LetValue::Function(function) => Ok(function.clone()),
            _ => Err("the parameter list is not valid".to_string()),
        },
        _ => Err("the function text is not valid".to_string()),
    }
}

impl Binder<'_> {
    /// Whether `name` is a `let` function in scope or a stored function.
    pub(crate) fn has_function(&self, name: &str) -> bool {
        if self.functions.contains_key(name) {
            return true;
        }
        match self.stored.get(name) {
            Some(cached) => cached.is_some(),
            None => self.catalog.function(name).is_some(),
        }
    }

    /// Whether a call of `name` goes to a stored function (no `let`
    /// function of that name is in scope).
    pub(crate) fn is_stored(&self, name: &str) -> bool {
        !self.functions.contains_key(name)
    }

    /// The definition of the function `name`: a `let` function in scope,
    /// else a stored function. A stored function that does not parse is
    /// reported at `span`.
    pub(crate) fn lookup_function(&mut self, name: &str, span: Span) -> Option<FunctionDef> {
        if let Some(function) = self.functions.get(name) {
            return Some(function.clone());
        }
        if !self.stored.contains_key(name) {
            let parsed = self.catalog.function(name).map(|stored| parse_stored_function(&stored));
            let parsed = match parsed {
                None => None,
                Some(Ok(function)) => Some(function),
                Some(Err(message)) => {
                    let message = format!("stored function '{name}' is not valid: {message}");
                    self.report(Diagnostic::semantic("KQL2015", span, message));
                    return None;
                }
            };
            self.stored.insert(name.to_string(), parsed);
        }
        self.stored.get(name).cloned().flatten()
    }

    /// Runs `bind` (the binding of a stored function's body) and points
    /// every problem it reports at `span`, the call in the query.
    pub(crate) fn attributed_to_call<T>(
        &mut self,
        name: &str,
        span: Span,
        bind: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let before = self.diagnostics.len();
        let result = bind(self);
        for diagnostic in &mut self.diagnostics[before..] {
            diagnostic.span = span;
            diagnostic.message = format!("in function '{name}': {}", diagnostic.message);
        }
        result
    }
}
