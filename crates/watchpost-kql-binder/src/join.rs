//! Binding of the operators that combine tabular values: `join`, `lookup`
//! and `union`, with Kusto's output-column rules (a right-side name that is
//! already taken gets a number: `Key1`; `union` lists columns in order of
//! first appearance).

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{Ident, JoinKey, TabularExpr, TabularSource};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use crate::bound::{BoundTabular, JoinKind, TabularKind, UnionInput};
use crate::Binder;

impl Binder<'_> {
    pub(crate) fn bind_join(
        &mut self,
        left: BoundTabular,
        is_lookup: bool,
        kind: Option<&Ident>,
        right: &TabularExpr,
        on: &[JoinKey],
        span: Span,
    ) -> Option<BoundTabular> {
        let kind = match kind {
            None if is_lookup => JoinKind::LookupLeftOuter,
            None => JoinKind::InnerUnique,
            Some(kind) => match (is_lookup, kind.name.as_str()) {
                (true, "leftouter") => JoinKind::LookupLeftOuter,
                (true, "inner") => JoinKind::LookupInner,
                (false, "innerunique") => JoinKind::InnerUnique,
                (false, "inner") => JoinKind::Inner,
                (false, "leftouter") => JoinKind::LeftOuter,
                (false, "rightouter") => JoinKind::RightOuter,
                (false, "fullouter") => JoinKind::FullOuter,
                (false, "leftanti" | "anti" | "leftantisemi") => JoinKind::LeftAnti,
                (false, "rightanti" | "rightantisemi") => JoinKind::RightAnti,
                (false, "leftsemi") => JoinKind::LeftSemi,
                (false, "rightsemi") => JoinKind::RightSemi,
                (_, other) => {
                    let hint = if is_lookup {
                        "lookup kinds are `leftouter` and `inner`"
                    } else {
                        "join kinds are innerunique, inner, leftouter, rightouter, fullouter, leftanti, rightanti, leftsemi and rightsemi"
                    };
                    self.report(
                        Diagnostic::semantic("KQL2012", kind.span, format!("unknown join kind '{other}'"))
                            .with_hint(hint),
                    );
                    return None;
                }
            },
        };
        let right = self.bind_tabular(right)?;
        let mut keys = Vec::new();
        for key in on {
            let (left_name, right_name) = match key {
                JoinKey::Column(name) => (name, name),
                JoinKey::Pair { left, right } => (left, right),
            };
            let left_idx = self.join_column(&left.schema, left_name, "left")?;
            let right_idx = self.join_column(&right.schema, right_name, "right")?;
            let (left_ty, right_ty) =
                (left.schema.columns[left_idx].kql_type, right.schema.columns[right_idx].kql_type);
            if left_ty != right_ty && !(is_number(left_ty) && is_number(right_ty)) {
                let message = format!(
                    "join keys must have the same type: '{}' is {} on the left, '{}' is {} on the right",
                    left_name.name, left_ty, right_name.name, right_ty
                );
                self.report(Diagnostic::semantic("KQL2013", span, message));
                return None;
            }
            keys.push((left_idx, right_idx));
        }
        let schema = join_schema(kind, &left.schema, &right.schema, &keys);
        Some(BoundTabular {
            kind: TabularKind::Join { left: Box::new(left), right: Box::new(right), kind, keys },
            schema,
        })
    }

    fn join_column(&mut self, schema: &TableSchema, name: &Ident, side: &str) -> Option<usize> {
        if let Some(idx) = schema.columns.iter().position(|column| column.name == name.name) {
            return Some(idx);
        }
        let message = format!("Failed to resolve column named '{}' on the {side} side of the join", name.name);
        let mut diagnostic = Diagnostic::semantic("KQL2002", name.span, message);
        if let Some(similar) = crate::closest(&name.name, schema.columns.iter().map(|column| column.name.as_str())) {
            diagnostic = diagnostic.with_hint(format!("did you mean '{similar}'?"));
        }
        self.report(diagnostic);
        None
    }

    /// Binds `union`; `first` is the piped input, if any.
    pub(crate) fn bind_union(
        &mut self,
        first: Option<(Option<String>, BoundTabular)>,
        params: &[(Ident, Ident)],
        tables: &[TabularExpr],
        span: Span,
    ) -> Option<BoundTabular> {
        let (mut outer, mut fuzzy, mut source_column) = (true, false, None);
        for (name, value) in params {
            match (name.name.as_str(), value.name.as_str()) {
                ("kind", "outer") => outer = true,
                ("kind", "inner") => outer = false,
                ("isfuzzy", "true") => fuzzy = true,
                ("isfuzzy", "false") => fuzzy = false,
                ("withsource", column) => source_column = Some(column.to_string()),
                (other, value) => {
                    let message = format!("unknown union parameter '{other}={value}'");
                    let hint = "union takes kind=inner|outer, withsource=Column and isfuzzy=true|false";
                    self.report(Diagnostic::semantic("KQL2014", name.span, message).with_hint(hint));
                    return None;
                }
            }
        }
        let mut inputs = Vec::new();
        if let Some((label, first)) = first {
            inputs.push(UnionInput { source: label.unwrap_or_else(|| "union_arg0".to_string()), tabular: first });
        }
        for (idx, table) in tables.iter().enumerate() {
            let source = match (&table.source, table.operators.last()) {
                (TabularSource::Table(name), None) => name.name.clone(),
                (_, Some(operator)) if matches!(operator.kind, watchpost_kql_syntax::ast::OperatorKind::As(_)) => {
                    let watchpost_kql_syntax::ast::OperatorKind::As(name) = &operator.kind else { unreachable!() };
                    name.name.clone()
                }
                _ => format!("union_arg{}", inputs.len().max(idx)),
            };
            if fuzzy && self.is_missing_table(table) {
                continue;
            }
            inputs.push(UnionInput { source, tabular: self.bind_tabular(table)? });
        }
        if inputs.is_empty() {
            self.report(Diagnostic::semantic("KQL2001", span, "none of the tables of the fuzzy union exist"));
            return None;
        }
        let mut columns: Vec<ColumnDef> = Vec::new();
        for input in &inputs {
            for column in &input.tabular.schema.columns {
                let conflict =
                    columns.iter().position(|seen| seen.name == column.name && seen.kql_type != column.kql_type);
                if conflict.is_some() {
                    let renamed = format!("{}_{}", column.name, column.kql_type);
                    if !columns.iter().any(|seen| seen.name == renamed) {
                        columns.push(ColumnDef::new(renamed, column.kql_type));
                    }
                } else if !columns.iter().any(|seen| seen.name == column.name) {
                    columns.push(column.clone());
                }
            }
        }
        // A name with conflicting types is split into `name_type` columns.
        let conflicted: Vec<String> = columns
            .iter()
            .filter(|column| columns.iter().any(|other| other.name == format!("{}_{}", column.name, other.kql_type)))
            .map(|column| column.name.clone())
            .collect();
        let columns: Vec<ColumnDef> = columns
            .into_iter()
            .map(|column| {
                if conflicted.contains(&column.name) {
                    ColumnDef::new(format!("{}_{}", column.name, column.kql_type), column.kql_type)
                } else {
                    column
                }
            })
            .collect();
        let mut columns: Vec<ColumnDef> = if outer {
            columns
        } else {
            columns
                .into_iter()
                .filter(|column| inputs.iter().all(|input| union_source_index(&input.tabular.schema, column).is_some()))
                .collect()
        };
        if let Some(name) = &source_column {
            columns.insert(0, ColumnDef::new(name, KqlType::String));
        }
        let schema = TableSchema::new(columns);
        Some(BoundTabular { kind: TabularKind::Union { inputs, source_column }, schema })
    }

    /// Whether `table` is a bare name that is neither a table nor a `let`.
    fn is_missing_table(&self, table: &TabularExpr) -> bool {
        match &table.source {
            TabularSource::Table(name) => {
                !self.tabulars.contains_key(&name.name)
                    && self.catalog.table(&name.name).is_none()
                    && !self.has_function(&name.name)
            }
            _ => false,
        }
    }
}

/// Where union output `column` comes from in an input of `schema`: the
/// column of that name and type (a `name_type` output also matches `name`).
pub fn union_source_index(schema: &TableSchema, column: &ColumnDef) -> Option<usize> {
    schema.columns.iter().position(|input| {
        input.kql_type == column.kql_type
            && (input.name == column.name || format!("{}_{}", input.name, input.kql_type) == column.name)
    })
}

fn is_number(ty: KqlType) -> bool {
    matches!(ty, KqlType::Int | KqlType::Long | KqlType::Real | KqlType::Decimal)
}

/// The output columns of a join: which side each comes from, in order.
pub fn join_outputs(
    kind: JoinKind,
    left: &TableSchema,
    right: &TableSchema,
    keys: &[(usize, usize)],
) -> Vec<(bool, usize)> {
    let left_all = (0..left.columns.len()).map(|idx| (false, idx));
    let right_all = (0..right.columns.len()).map(|idx| (true, idx));
    match kind {
        JoinKind::LeftAnti | JoinKind::LeftSemi => left_all.collect(),
        JoinKind::RightAnti | JoinKind::RightSemi => right_all.collect(),
        JoinKind::LookupLeftOuter | JoinKind::LookupInner => {
            left_all.chain(right_all.filter(|(_, idx)| !keys.iter().any(|(_, key)| key == idx))).collect()
        }
        _ => left_all.chain(right_all).collect(),
    }
}

pub(crate) fn join_schema(
    kind: JoinKind,
    left: &TableSchema,
    right: &TableSchema,
    keys: &[(usize, usize)],
) -> TableSchema {
    let mut columns: Vec<ColumnDef> = Vec::new();
    for (is_right, idx) in join_outputs(kind, left, right, keys) {
        let column = if is_right { &right.columns[idx] } else { &left.columns[idx] };
        let mut name = column.name.clone();
        let mut suffix = 1;
        while columns.iter().any(|seen| seen.name == name) {
            name = format!("{}{suffix}", column.name);
            suffix += 1;
        }
        columns.push(ColumnDef::new(name, column.kql_type));
    }
    TableSchema::new(columns)
}
