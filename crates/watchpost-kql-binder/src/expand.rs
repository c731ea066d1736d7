//! Binding of `mv-expand`: which dynamic values are expanded, to which
//! types, and where the expanded columns sit in the output.

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{Ident, MvExpand};
use watchpost_schema::{ColumnDef, KqlType};

use crate::bound::{BoundTabular, ExpandColumn, TabularKind};
use crate::tabular::NamingStyle;
use crate::Binder;

impl Binder<'_> {
    /// `mv-expand`: an expanded column keeps its place when it replaces an
    /// input column and goes last otherwise; the item index column follows.
    pub(crate) fn bind_mv_expand(
        &mut self,
        input: BoundTabular,
        expand: &MvExpand,
        span: Span,
    ) -> Option<BoundTabular> {
        let mut bags_as_arrays = false;
        let mut item_index = None;
        for (name, value) in &expand.params {
            match (name.name.as_str(), value.name.as_str()) {
                ("bagexpansion" | "kind", "bag") => bags_as_arrays = false,
                ("bagexpansion" | "kind", "array") => bags_as_arrays = true,
                ("with_itemindex", _) => item_index = Some(value.name.clone()),
                _ => {
                    let message = format!("unknown mv-expand parameter value `{}={}`", name.name, value.name);
                    let hint = "use `bagexpansion=bag`, `bagexpansion=array` or `with_itemindex=Name`";
                    self.report(Diagnostic::semantic("KQL2011", name.span.cover(value.span), message).with_hint(hint));
                    return None;
                }
            }
        }
        let named: Vec<_> = expand.items.iter().map(|item| item.expr.clone()).collect();
        let bound = self.bind_named_list(&named, &input.schema, NamingStyle::Column)?;
        let mut columns = Vec::new();
        for ((name, expr), item) in bound.into_iter().zip(&expand.items) {
            if expr.ty != KqlType::Dynamic {
                let message = format!("mv-expand expects a dynamic array or property bag, got {}", expr.ty);
                let hint = "convert the value first, for example with parse_json() or split()";
                self.report(Diagnostic::semantic("KQL2004", item.expr.span, message).with_hint(hint));
                return None;
            }
            let ty = match &item.to_type {
                Some(type_name) => self.type_named(type_name)?,
                None => KqlType::Dynamic,
            };
            columns.push(ExpandColumn { name, expr, bags_as_arrays, ty });
        }
        let limit = match &expand.limit {
            Some(limit) => Some(self.constant_count(limit)?),
            None => None,
        };
        let mut schema = input.schema.clone();
        for column in &columns {
            match schema.columns.iter_mut().find(|existing| existing.name == column.name) {
                Some(existing) => existing.kql_type = column.ty,
                None => schema.columns.push(ColumnDef::new(&column.name, column.ty)),
            }
        }
        if let Some(index_name) = &item_index {
            if schema.column(index_name).is_some() {
                let message = format!("the item index column '{index_name}' already exists");
                self.report(Diagnostic::semantic("KQL2011", span, message));
                return None;
            }
            schema.columns.push(ColumnDef::new(index_name, KqlType::Long));
        }
        Some(BoundTabular {
            kind: TabularKind::MvExpand { input: Box::new(input), columns, item_index, limit },
            schema,
        })
    }

    /// The type called `name`, or a reported error.
    pub(crate) fn type_named(&mut self, name: &Ident) -> Option<KqlType> {
        let ty = KqlType::from_name(&name.name);
        if ty.is_none() {
            self.report(Diagnostic::semantic("KQL2008", name.span, format!("unknown type '{}'", name.name)));
        }
        ty
    }
}
