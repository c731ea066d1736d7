//! Functions that return several values (`series_decompose_anomalies`):
//! `extend (A, B, C) = f(...)` names each value, and `extend X = f(...)`
//! (or an unnamed `f(Col)`) makes `X_ad_flag`, `X_ad_score`... as Kusto
//! does. Each value becomes its own item calling the internal function
//! that computes it; any other tuple assignment is refused.

use watchpost_diagnostics::Diagnostic;
use watchpost_kql_syntax::ast::{Expr, ExprKind as Ast, Ident, NamedExpr};

use crate::{functions, Binder};

impl Binder<'_> {
    /// `items` with every call of a multi-valued function split into one
    /// item per value.
    pub(crate) fn expand_multi_valued(&mut self, items: &[NamedExpr]) -> Option<Vec<NamedExpr>> {
        let mut expanded = Vec::with_capacity(items.len());
        for item in items {
            let call = match &item.expr.kind {
                Ast::Call { name, args } if !self.functions.contains_key(&name.name) => {
                    functions::multi_valued(&name.name).map(|values| (name, args, values))
                }
                _ => None,
            };
            let Some((name, args, values)) = call else {
                if !item.tuple.is_empty() {
                    let message = "only functions that return several values, such as series_decompose_anomalies(), \
                                   can be assigned to several columns";
                    self.report(Diagnostic::semantic("KQL2011", item.span, message));
                    return None;
                }
                expanded.push(item.clone());
                continue;
            };
            if item.tuple.len() > values.len() {
                let message = format!("{}() returns {} values, not {}", name.name, values.len(), item.tuple.len());
                self.report(Diagnostic::semantic("KQL2011", item.span, message));
                return None;
            }
            let base = match (&item.name, args.first().map(|arg| &arg.kind)) {
                (Some(ident), _) => ident.name.clone(),
                (None, Some(Ast::Name(column))) => format!("{}_{}", name.name, column.name),
                (None, _) => name.name.clone(),
            };
            for (idx, (function, suffix)) in values.iter().enumerate() {
                let column = match item.tuple.get(idx) {
                    Some(ident) => ident.clone(),
                    // A tuple may name only the first values; the rest are dropped.
                    None if !item.tuple.is_empty() => break,
                    None => Ident { name: format!("{base}{suffix}"), span: item.span },
                };
                let callee = Ident { name: (*function).to_string(), span: name.span };
                let expr = Expr { kind: Ast::Call { name: callee, args: args.clone() }, span: item.expr.span };
                expanded.push(NamedExpr { name: Some(column), tuple: Vec::new(), expr, span: item.span });
            }
        }
        Some(expanded)
    }
}
