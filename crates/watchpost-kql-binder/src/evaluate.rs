//! Binding of `evaluate` plugins. Only `bag_unpack` exists so far.
//!
//! `bag_unpack(Col [, prefix])` turns each key of the property bags in `Col`
//! into a dynamic column, so its output columns depend on the data. The
//! binder cannot know them; it asks its caller through a [`BagProbe`]: the
//! caller runs the probe's input, collects the keys and binds again with
//! them in [`BagKeys`].

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{Expr, ExprKind as Ast, Ident, Literal};
use watchpost_schema::KqlType;

use crate::bound::{BoundExpr, BoundTabular, ExprKind, ScalarFunction, Value};
use crate::tabular::{column_ref, project};
use crate::{BagProbe, Binder};

impl Binder<'_> {
    pub(crate) fn bind_evaluate(
        &mut self,
        input: BoundTabular,
        plugin: &Ident,
        args: &[Expr],
        span: Span,
    ) -> Option<BoundTabular> {
        if plugin.name != "bag_unpack" {
            let message = format!("the `{}` plugin is not supported yet", plugin.name);
            self.report(Diagnostic::semantic("KQL3001", plugin.span, message));
            return None;
        }
        let (column, prefix) = match args {
            [Expr { kind: Ast::Name(column), .. }] => (column, String::new()),
            [Expr { kind: Ast::Name(column), .. }, Expr { kind: Ast::Literal(Literal::String(prefix)), .. }] => {
                (column, prefix.clone())
            }
            _ => {
                let message = "bag_unpack() expects a dynamic column and an optional string prefix";
                let hint = "for example `evaluate bag_unpack(Properties)` or `evaluate bag_unpack(Properties, \"p_\")`";
                self.report(Diagnostic::semantic("KQL2007", span, message).with_hint(hint));
                return None;
            }
        };
        self.require_column(&input.schema, &column.name, column.span)?;
        let source = input.schema.column(&column.name).cloned()?;
        if source.kql_type != KqlType::Dynamic {
            let message = format!("bag_unpack() expects a dynamic column, '{}' is {}", column.name, source.kql_type);
            self.report(Diagnostic::semantic("KQL2004", column.span, message));
            return None;
        }
        let Some(keys) = self.bag_keys.get(&span).cloned() else {
            self.probe = Some(BagProbe { span, input, column: column.name.clone() });
            return None;
        };
        let mut columns: Vec<_> = input
            .schema
            .columns
            .iter()
            .filter(|existing| existing.name != column.name)
            .map(|existing| (existing.name.clone(), column_ref(existing)))
            .collect();
        for key in keys {
            let name = format!("{prefix}{key}");
            if columns.iter().any(|(existing, _)| *existing == name) {
                let message = format!("bag_unpack(): the property '{name}' has the name of an existing column");
                let hint = "give the new columns a prefix: `bag_unpack(Column, \"prefix_\")`";
                self.report(Diagnostic::semantic("KQL2011", span, message).with_hint(hint));
                return None;
            }
            let key = BoundExpr { kind: ExprKind::Literal(Value::String(key)), ty: KqlType::String };
            let value = BoundExpr {
                kind: ExprKind::Call { function: ScalarFunction::DynamicGet, args: vec![column_ref(&source), key] },
                ty: KqlType::Dynamic,
            };
            columns.push((name, value));
        }
        Some(project(input, columns))
    }
}
