//! The KQL binder: resolves names against table schemas and `let`
//! statements, types every expression, and produces the bound tree
//! ([`bound`]) the engine lowers.
//!
//! Errors are reported the way Kusto reports them (what is wrong, where, and
//! a hint), as [`Diagnostic`]s with spans into the query text; no engine
//! message ever reaches the user from here. The binder knows nothing of
//! DataFusion or storage: tables come from a [`TableCatalog`].
//!
//! Start reading at [`bind`].

pub mod bound;
mod evaluate;
mod expand;
mod expr;
mod functions;
mod join;
mod make_series;
mod multi_value;
mod parse_op;
mod stored_function;
mod summarize;
mod tabular;
mod top_nested;
mod user_function;
mod window;

pub use join::{join_outputs, union_source_index};
pub use stored_function::parse_stored_function;

use std::collections::HashMap;

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{FunctionDef, LetStmt, LetValue, Query, Statement};
use watchpost_schema::TableSchema;

use crate::bound::{BoundExpr, BoundTabular};

/// Where the binder looks up tables.
pub trait TableCatalog {
    /// The schema of the table called `name`, if it exists.
    fn table(&self, name: &str) -> Option<TableSchema>;
    /// Every table name, for "did you mean" hints.
    fn table_names(&self) -> Vec<String>;
    /// The stored (saved) function called `name`, if any. Stored functions
    /// are used wherever a table or a function is: `Parser | count`,
    /// `Parser(starttime=ago(1d))`, `union isfuzzy=true Parser, T`.
    fn function(&self, name: &str) -> Option<StoredFunction> {
        let _ = name;
        None
    }
}

/// A function saved in the workspace, as text: its parameter list (without
/// the parentheses, as in `.create function F(a:string='x') {...}`) and its
/// body (without the braces). The binder parses it when a query calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFunction {
    pub parameters: String,
    pub body: String,
}

/// Keys of the property bags that `evaluate bag_unpack()` spreads into
/// columns, by the span of the `evaluate` operator.
pub type BagKeys = HashMap<Span, Vec<String>>;

/// Rows whose bags decide the columns of a `bag_unpack()`: the caller runs
/// `input`, collects the keys of the bags in `column` and binds again with
/// them under `span` in [`BagKeys`].
#[derive(Debug, Clone, PartialEq)]
pub struct BagProbe {
    pub span: Span,
    pub input: BoundTabular,
    pub column: String,
}

/// The result of [`bind_with_bag_keys`].
#[derive(Debug)]
pub struct Binding {
    /// The query's result, when binding succeeded.
    pub tabular: Option<BoundTabular>,
    pub diagnostics: Vec<Diagnostic>,
    /// Set (with no tabular and no diagnostics) when bag keys are needed.
    pub probe: Option<BagProbe>,
}

/// Binds a parsed query. Returns the tree of the query's result (if it has
/// one and binding succeeded) and every problem found. A `bag_unpack()`
/// cannot be bound this way (its columns depend on the data); the engine
/// uses [`bind_with_bag_keys`].
pub fn bind(query: &Query, catalog: &dyn TableCatalog) -> (Option<BoundTabular>, Vec<Diagnostic>) {
    let binding = bind_with_bag_keys(query, catalog, &BagKeys::new());
    if let Some(probe) = binding.probe {
        let message = "bag_unpack() needs the query engine to read the keys of the bags";
        return (None, vec![Diagnostic::semantic("KQL3001", probe.span, message)]);
    }
    (binding.tabular, binding.diagnostics)
}

/// Binds a parsed query knowing the bag keys found so far; see [`Binding`].
pub fn bind_with_bag_keys(query: &Query, catalog: &dyn TableCatalog, bag_keys: &BagKeys) -> Binding {
    let mut binder = Binder {
        catalog,
        bag_keys,
        probe: None,
        scalars: HashMap::new(),
        tabulars: HashMap::new(),
        functions: HashMap::new(),
        stored: HashMap::new(),
        param_scopes: Vec::new(),
        calling: Vec::new(),
        window_allowed: false,
        n_windows: 0,
        diagnostics: Vec::new(),
    };
    let mut result = None;
    for statement in &query.statements {
        if binder.probe.is_some() {
            break;
        }
        match statement {
            Statement::Let(let_stmt) => binder.bind_let(let_stmt),
            Statement::Tabular(tabular) => result = binder.bind_tabular(tabular),
        }
    }
    if binder.diagnostics.is_empty() && binder.probe.is_some() {
        return Binding { tabular: None, diagnostics: Vec::new(), probe: binder.probe };
    }
    if binder.diagnostics.is_empty() && result.is_none() {
        binder.diagnostics.push(Diagnostic::semantic(
            "KQL2000",
            query.span,
            "the query has no tabular expression to return",
        ));
    }
    if !binder.diagnostics.is_empty() {
        return Binding { tabular: None, diagnostics: binder.diagnostics, probe: None };
    }
    Binding { tabular: result, diagnostics: binder.diagnostics, probe: None }
}

pub(crate) struct Binder<'a> {
    catalog: &'a dyn TableCatalog,
    /// Known keys of `bag_unpack()` bags.
    bag_keys: &'a BagKeys,
    /// The first `bag_unpack()` whose keys are not known yet.
    probe: Option<BagProbe>,
    scalars: HashMap<String, BoundExpr>,
    tabulars: HashMap<String, BoundTabular>,
    /// User-defined functions from `let f = (...) { ... }`.
    functions: HashMap<String, FunctionDef>,
    /// Stored functions parsed so far (`None`: the catalog has none of
    /// that name).
    stored: HashMap<String, Option<FunctionDef>>,
    /// Parameter values of the user functions being inlined, innermost last.
    param_scopes: Vec<HashMap<String, BoundExpr>>,
    /// Names of the user functions being inlined, to refuse recursion.
    calling: Vec<String>,
    /// Whether window functions may appear in the expression being bound.
    window_allowed: bool,
    /// Window calls lifted so far, for unique column names.
    n_windows: usize,
    diagnostics: Vec<Diagnostic>,
}

impl Binder<'_> {
    /// Binds a `let` statement, making its name visible to what follows
    /// (inside a function body, until the body ends).
    fn bind_let(&mut self, let_stmt: &LetStmt) {
        let name = let_stmt.name.name.clone();
        match &let_stmt.value {
            LetValue::Scalar(expr) => {
                // `let t = T;` parses as a scalar name; it is tabular when
                // the name is a table or a tabular `let`.
                if let Some(tabular) = self.tabular_alias(expr) {
                    self.tabulars.insert(name, tabular);
                    return;
                }
                let empty = TableSchema::default();
                if let Some(bound) = self.bind_expr(expr, &empty) {
                    self.scalars.insert(name, bound);
                }
            }
            LetValue::Tabular(tabular) => {
                if let Some(bound) = self.bind_tabular(tabular) {
                    self.tabulars.insert(name, bound);
                }
            }
            LetValue::Function(function) => {
                self.scalars.remove(&name);
                self.functions.insert(name, function.clone());
            }
        }
    }

    /// The tabular value a bare name (or a tabular function call) in a `let`
    /// refers to, if any.
    fn tabular_alias(&mut self, expr: &watchpost_kql_syntax::ast::Expr) -> Option<BoundTabular> {
        if let watchpost_kql_syntax::ast::ExprKind::Call { name, .. } = &expr.kind {
            if !self.has_function(&name.name) {
                return None;
            }
            let is_tabular = self
                .lookup_function(&name.name, name.span)
                .is_some_and(|function| matches!(function.body, watchpost_kql_syntax::ast::FunctionBody::Tabular(_)));
            return if is_tabular { self.bind_function_source(expr) } else { None };
        }
        let watchpost_kql_syntax::ast::ExprKind::Name(ident) = &expr.kind else { return None };
        if self.scalars.contains_key(&ident.name) {
            return None;
        }
        if let Some(bound) = self.tabulars.get(&ident.name) {
            return Some(bound.clone());
        }
        if let Some(schema) = self.catalog.table(&ident.name) {
            return Some(BoundTabular { kind: bound::TabularKind::Table { name: ident.name.clone() }, schema });
        }
        if !self.is_stored(&ident.name) || !self.has_function(&ident.name) {
            return None;
        }
        // A stored function without arguments stands for its result, as a table does.
        let call = watchpost_kql_syntax::ast::Expr {
            kind: watchpost_kql_syntax::ast::ExprKind::Call { name: ident.clone(), args: Vec::new() },
            span: ident.span,
        };
        self.bind_function_source(&call)
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }
}

/// Returns the candidate closest to `name` (case-insensitive edit distance of
/// at most a third of its length), for "did you mean" hints.
pub(crate) fn closest<'n>(name: &str, candidates: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(&lower, &candidate.to_lowercase()), candidate))
        .filter(|(distance, _)| *distance <= (name.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
