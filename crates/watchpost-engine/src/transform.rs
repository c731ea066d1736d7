//! `transformKql` of a data collection rule: a KQL query over `source`, an
//! in-memory table of one batch with a stream's declared columns.
//!
//! [`Transform::compile`] parses, checks the transform subset of KQL (spec
//! 2.5: operators that take one row and emit at most one; a fixed list of
//! functions) on the syntax tree, and binds against `source`, so a rule is
//! refused at creation with a [`Diagnostic`] pointing at the offending
//! text. [`Transform::apply`] runs the bound query over one batch.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_geo::GeoDb;
use watchpost_kql_binder::bound::BoundTabular;
use watchpost_kql_binder::TableCatalog;
use watchpost_kql_syntax::ast::{
    BinaryOp, Expr, ExprKind, FunctionBody, Ident, LetStmt, LetValue, ListOp, Literal, NamedExpr, OperatorKind, Query,
    Statement, TabularExpr, TabularSource,
};
use watchpost_schema::{KqlType, TableSchema};

use crate::QueryError;

/// The table name a transform reads.
pub const SOURCE_TABLE: &str = "source";

/// Most columns one `parse` may extract in a transform.
const MAX_PARSE_COLUMNS: usize = 10;

/// Functions a transform may call (spec 2.5), lower-case.
const ALLOWED_FUNCTIONS: &[&str] = &[
    // conversion
    "tobool",
    "toboolean",
    "todatetime",
    "todouble",
    "toreal",
    "toguid",
    "toint",
    "tolong",
    "tostring",
    "totimespan",
    // date and time
    "ago",
    "datetime_add",
    "datetime_diff",
    "datetime_part",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "endofday",
    "endofmonth",
    "endofweek",
    "endofyear",
    "getmonth",
    "getyear",
    "hourofday",
    "make_datetime",
    "make_timespan",
    "now",
    "startofday",
    "startofmonth",
    "startofweek",
    "startofyear",
    "weekofyear",
    // dynamic
    "array_concat",
    "array_length",
    "pack_array",
    "pack",
    "bag_pack",
    "parse_json",
    "todynamic",
    "parse_xml",
    "parse_cef_dictionary",
    "geo_location",
    "zip",
    // math
    "abs",
    "bin",
    "floor",
    "ceiling",
    "exp",
    "exp10",
    "exp2",
    "isfinite",
    "isinf",
    "isnan",
    "log",
    "log10",
    "log2",
    "pow",
    "round",
    "sign",
    // conditional
    "case",
    "iif",
    "iff",
    "max_of",
    "min_of",
    // string
    "base64_encodestring",
    "base64_decodestring",
    "base64_encode_tostring",
    "base64_decode_tostring",
    "countof",
    "extract",
    "extract_all",
    "indexof",
    "isempty",
    "isnotempty",
    "split",
    "strcat",
    "strcat_delim",
    "strlen",
    "substring",
    "tolower",
    "toupper",
    "hash_sha256",
    // type
    "gettype",
    "isnotnull",
    "isnull",
    // bitwise
    "binary_and",
    "binary_or",
    "binary_xor",
    "binary_not",
    "binary_shift_left",
    "binary_shift_right",
    // transform-only spelling
    "columnifexists",
    "column_ifexists",
    // type-named literals (`datetime(...)`, `timespan(...)`) are calls too
    "datetime",
    "timespan",
    "long",
    "int",
    "real",
    "double",
    "bool",
    "boolean",
    "string",
    "guid",
];

/// A compiled `transformKql`.
#[derive(Clone)]
pub struct Transform {
    text: String,
    input: TableSchema,
    bound: BoundTabular,
    /// Made once: a session registers every built-in function, which is a
    /// cost worth paying per rule rather than per batch.
    session: SessionContext,
    /// What `geo_location` looks up in.
    geo: Option<Arc<GeoDb>>,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("text", &self.text)
            .field("output", &self.bound.schema)
            .finish_non_exhaustive()
    }
}

impl Transform {
    /// Parses, checks the transform subset and binds `text` with `source`
    /// having the `input` columns. Errors point into `text`.
    pub fn compile(text: &str, input: &TableSchema) -> Result<Transform, Vec<Diagnostic>> {
        Transform::compile_tracked(text, input, None)
    }

    /// [`Transform::compile`], where `row` names a column of `input` that
    /// every `project` keeps (it is appended to each one), so each output
    /// row says which input row it came from. The pipeline's `kql` step
    /// uses it to put the output back on its events; the column is the
    /// caller's to remove from the output.
    pub fn compile_tracked(text: &str, input: &TableSchema, row: Option<&str>) -> Result<Transform, Vec<Diagnostic>> {
        let (mut query, syntax_errors) = watchpost_kql_syntax::parse(text);
        if !syntax_errors.is_empty() {
            return Err(syntax_errors);
        }
        let mut diagnostics = Vec::new();
        check_subset(&query, &mut diagnostics);
        if !diagnostics.is_empty() {
            return Err(diagnostics);
        }
        if let Some(row) = row {
            keep_in_projects(&mut query, row);
        }
        let catalog = SourceCatalog { schema: input };
        let (bound, diagnostics) = watchpost_kql_binder::bind(&query, &catalog);
        match bound {
            Some(bound) if diagnostics.is_empty() => {
                let config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
                let session = SessionContext::new_with_config(config);
                Ok(Transform { text: text.to_string(), input: input.clone(), bound, session, geo: None })
            }
            _ => Err(diagnostics),
        }
    }

    /// Makes `geo_location` look up in `geo`.
    pub fn with_geo(mut self, geo: Option<Arc<GeoDb>>) -> Transform {
        self.geo = geo;
        self
    }

    /// The transform's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The columns the transform outputs.
    pub fn output_schema(&self) -> &TableSchema {
        &self.bound.schema
    }

    /// Runs the transform over one batch whose columns are the input schema.
    /// `now_ns` is what `now()` and `ago()` see.
    pub async fn apply(&self, batch: RecordBatch, now_ns: i64) -> Result<Vec<RecordBatch>, QueryError> {
        let session = &self.session;
        let table = MemTable::try_new(self.input.arrow_schema(), vec![vec![batch]])?;
        let source = session.read_table(Arc::new(table))?.into_unoptimized_plan();
        let scan = |name: &str| {
            if name == SOURCE_TABLE {
                Ok(source.clone())
            } else {
                Err(datafusion::error::DataFusionError::Plan(format!("a transform reads only `source`, not {name}")))
            }
        };
        let context = crate::lower::LowerContext { session, now_ns, geo: self.geo.as_ref(), scan: &scan };
        let plan = crate::lower::lower_query(&self.bound, &context)?;
        let frame = session.execute_logical_plan(plan).await?;
        Ok(frame.collect().await?)
    }
}

/// Appends the column `row` to every `project` of the query's tabular
/// expressions, so the transform subset's only column-dropping operator
/// other than `project-away` keeps it.
fn keep_in_projects(query: &mut Query, row: &str) {
    fn tabular(expr: &mut TabularExpr, row: &str) {
        if let TabularSource::Parenthesized(inner) = &mut expr.source {
            tabular(inner, row);
        }
        for operator in &mut expr.operators {
            if let OperatorKind::Project(items) = &mut operator.kind {
                let span = operator.span;
                let name = Ident { name: row.to_string(), span };
                let expr = Expr { kind: ExprKind::Name(name), span };
                items.push(NamedExpr { name: None, tuple: Vec::new(), expr, span });
            }
        }
    }
    for statement in &mut query.statements {
        match statement {
            Statement::Let(LetStmt { value: LetValue::Tabular(value), .. }) => tabular(value, row),
            Statement::Tabular(value) => tabular(value, row),
            Statement::Let(_) => {}
        }
    }
}

/// A transform's output value at `row` as an event holds it: dynamic
/// values parsed, datetimes and timespans as their Kusto text, null as
/// `Null`.
pub fn value_json(array: &ArrayRef, kql_type: KqlType, row: usize) -> serde_json::Value {
    crate::udf::kernel::json_at(array, kql_type, row)
}

struct SourceCatalog<'a> {
    schema: &'a TableSchema,
}

impl TableCatalog for SourceCatalog<'_> {
    fn table(&self, name: &str) -> Option<TableSchema> {
        (name == SOURCE_TABLE).then(|| self.schema.clone())
    }

    fn table_names(&self) -> Vec<String> {
        vec![SOURCE_TABLE.to_string()]
    }
}

const SUBSET_CODE: &str = "KQL7001";

fn forbid(diagnostics: &mut Vec<Diagnostic>, span: Span, what: String) {
    let message = format!("{what} is not allowed in transformKql: a transformation runs on each record on its own");
    let hint = "transformKql allows `source`, `let`, `print`, `datatable` and the operators extend, project, \
                project-away, project-rename, where and parse";
    diagnostics.push(Diagnostic::semantic(SUBSET_CODE, span, message).with_hint(hint));
}

/// Walks the syntax tree and reports every construct outside the transform
/// subset (spec 2.5).
fn check_subset(query: &Query, diagnostics: &mut Vec<Diagnostic>) {
    let mut functions: Vec<String> = Vec::new();
    for statement in &query.statements {
        match statement {
            Statement::Let(stmt) => match &stmt.value {
                LetValue::Scalar(expr) => check_expr(expr, &functions, diagnostics),
                LetValue::Tabular(tabular) => check_tabular(tabular, &functions, diagnostics),
                LetValue::Function(def) => {
                    for param in &def.params {
                        if matches!(param.param_type, watchpost_kql_syntax::ast::ParamType::Tabular { .. }) {
                            forbid(diagnostics, param.name.span, "a tabular function parameter".to_string());
                        }
                    }
                    functions.push(stmt.name.name.to_ascii_lowercase());
                    match &def.body {
                        FunctionBody::Scalar(expr) => check_expr(expr, &functions, diagnostics),
                        FunctionBody::Tabular(tabular) => {
                            forbid(diagnostics, tabular.span, "a tabular function".to_string())
                        }
                    }
                }
            },
            Statement::Tabular(tabular) => check_tabular(tabular, &functions, diagnostics),
        }
    }
}

fn check_tabular(tabular: &TabularExpr, functions: &[String], diagnostics: &mut Vec<Diagnostic>) {
    match &tabular.source {
        TabularSource::Table(_) => {}
        TabularSource::Print(items) => check_named(items, functions, diagnostics),
        TabularSource::Datatable { .. } => {}
        TabularSource::Parenthesized(inner) => check_tabular(inner, functions, diagnostics),
        TabularSource::Union { span, .. } => forbid(diagnostics, *span, "`union`".to_string()),
        TabularSource::Range { span, .. } => forbid(diagnostics, *span, "`range`".to_string()),
        TabularSource::FunctionCall(expr) => forbid(diagnostics, expr.span, "a tabular function call".to_string()),
    }
    for operator in &tabular.operators {
        let name = match &operator.kind {
            OperatorKind::Where(expr) => {
                check_expr(expr, functions, diagnostics);
                continue;
            }
            OperatorKind::Project(items) | OperatorKind::Extend(items) => {
                check_named(items, functions, diagnostics);
                continue;
            }
            OperatorKind::ProjectAway(_) | OperatorKind::ProjectRename(_) => continue,
            OperatorKind::Parse { source, pattern, .. } => {
                check_expr(source, functions, diagnostics);
                let columns = pattern
                    .iter()
                    .filter(|part| matches!(part, watchpost_kql_syntax::ast::ParsePart::Column { .. }))
                    .count();
                if columns > MAX_PARSE_COLUMNS {
                    let message = format!(
                        "a `parse` in transformKql may extract at most {MAX_PARSE_COLUMNS} columns; this one extracts {columns}"
                    );
                    diagnostics.push(Diagnostic::semantic(SUBSET_CODE, operator.span, message));
                }
                continue;
            }
            OperatorKind::Summarize { .. } => "summarize",
            OperatorKind::Sort(_) => "sort",
            OperatorKind::Take(_) => "take",
            OperatorKind::Top { .. } => "top",
            OperatorKind::Count => "count",
            OperatorKind::Distinct(_) => "distinct",
            OperatorKind::ProjectKeep(_) => "project-keep",
            OperatorKind::ProjectReorder(_) => "project-reorder",
            OperatorKind::Join { is_lookup: true, .. } => "lookup",
            OperatorKind::Join { .. } => "join",
            OperatorKind::Union { .. } => "union",
            OperatorKind::As(_) => "as",
            OperatorKind::GetSchema => "getschema",
            OperatorKind::Serialize(_) => "serialize",
            OperatorKind::MvExpand(_) => "mv-expand",
            OperatorKind::MvApply { .. } => "mv-apply",
            OperatorKind::Search { .. } => "search",
            OperatorKind::MakeSeries(_) => "make-series",
            OperatorKind::TopNested(_) => "top-nested",
            OperatorKind::Evaluate { .. } => "evaluate",
            OperatorKind::Invoke(_) => "invoke",
            OperatorKind::Render { .. } => "render",
        };
        forbid(diagnostics, operator.span, format!("the `{name}` operator"));
    }
}

fn check_named(items: &[NamedExpr], functions: &[String], diagnostics: &mut Vec<Diagnostic>) {
    for item in items {
        check_expr(&item.expr, functions, diagnostics);
    }
}

fn check_expr(expr: &Expr, functions: &[String], diagnostics: &mut Vec<Diagnostic>) {
    match &expr.kind {
        ExprKind::Literal(Literal::Dynamic(_)) => {
            let message = "a `dynamic(...)` literal is not allowed in transformKql".to_string();
            let diagnostic = Diagnostic::semantic(SUBSET_CODE, expr.span, message)
                .with_hint("write parse_json('...') instead of dynamic(...)");
            diagnostics.push(diagnostic);
        }
        ExprKind::Literal(_) | ExprKind::Name(_) | ExprKind::Star => {}
        ExprKind::Call { name, args } => {
            let lower = name.name.to_ascii_lowercase();
            if !ALLOWED_FUNCTIONS.contains(&lower.as_str()) && !functions.contains(&lower) {
                forbid(diagnostics, name.span, format!("the function `{}()`", name.name));
            }
            for arg in args {
                check_expr(arg, functions, diagnostics);
            }
        }
        ExprKind::Unary { operand, .. } => check_expr(operand, functions, diagnostics),
        ExprKind::Binary { op, left, right } => {
            if matches!(op, BinaryOp::HasPrefix | BinaryOp::HasSuffix) {
                forbid(diagnostics, expr.span, format!("the `{}` operator", op.as_str()));
            }
            check_expr(left, functions, diagnostics);
            check_expr(right, functions, diagnostics);
        }
        ExprKind::InList { op, expr: inner, list } => {
            if !matches!(op, ListOp::In | ListOp::NotIn) {
                forbid(diagnostics, expr.span, format!("the `{}` operator", op.as_str()));
            }
            check_expr(inner, functions, diagnostics);
            for item in list {
                check_expr(item, functions, diagnostics);
            }
        }
        ExprKind::Between { .. } => forbid(diagnostics, expr.span, "`between`".to_string()),
        ExprKind::Paren(inner) => check_expr(inner, functions, diagnostics),
        ExprKind::Member { expr: inner, .. } => check_expr(inner, functions, diagnostics),
        ExprKind::Index { expr: inner, index } => {
            check_expr(inner, functions, diagnostics);
            check_expr(index, functions, diagnostics);
        }
        ExprKind::ToScalar(_) => forbid(diagnostics, expr.span, "`toscalar()`".to_string()),
        ExprKind::InTabular { .. } => forbid(diagnostics, expr.span, "`in` over a tabular expression".to_string()),
        ExprKind::NamedArg { value, .. } => check_expr(value, functions, diagnostics),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use watchpost_schema::{ColumnDef, KqlType};

    use super::*;

    fn input() -> TableSchema {
        TableSchema::new(vec![ColumnDef::new("RawData", KqlType::String), ColumnDef::new("Host", KqlType::String)])
    }

    #[tokio::test]
    async fn parses_a_raw_column_per_batch() {
        let text = "source | parse RawData with 'user=' User ' bytes=' Bytes:long | where Bytes > 10 \
                    | extend Big = Bytes * 2 | project-away RawData";
        let transform = Transform::compile(text, &input()).unwrap();
        let names: Vec<_> = transform.output_schema().columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Host", "User", "Bytes", "Big"]);
        let raw: ArrayRef = Arc::new(StringArray::from(vec!["user=ann bytes=50", "user=bob bytes=5"]));
        let host: ArrayRef = Arc::new(StringArray::from(vec!["h1", "h2"]));
        let batch = RecordBatch::try_new(input().arrow_schema(), vec![raw, host]).unwrap();
        let output = transform.apply(batch, 0).await.unwrap();
        let rows: usize = output.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1);
        assert_eq!(output[0].column(1).as_string::<i32>().value(0), "ann");
        assert_eq!(output[0].column(3).as_primitive::<Int64Type>().value(0), 100);
    }

    #[test]
    fn refuses_what_the_subset_forbids_with_the_place() {
        let cases = [
            ("source | summarize count() by Host", "the `summarize` operator", "summarize count() by Host"),
            ("source | join (source) on Host", "the `join` operator", "join (source) on Host"),
            ("source | extend L = strlen(Host) | take 5", "the `take` operator", "take 5"),
            ("source | extend X = dynamic({\"a\": 1})", "`dynamic(...)` literal", "dynamic({\"a\": 1})"),
            ("source | extend X = hash_md5(Host)", "the function `hash_md5()`", "hash_md5"),
            ("union source, source", "`union`", "union source, source"),
        ];
        for (text, expected, place) in cases {
            let diagnostics = Transform::compile(text, &input()).unwrap_err();
            let first = &diagnostics[0];
            assert!(first.message.contains(expected), "{text}: {}", first.message);
            assert_eq!(first.span.text(text), place, "{text}");
        }
        let unknown = Transform::compile("source | extend L = strlen(Nope)", &input()).unwrap_err();
        assert!(unknown[0].message.contains("Nope"), "{}", unknown[0].message);
        let let_fn = "let twice = (x: long) { x * 2 }; source | extend N = twice(strlen(Host))";
        assert!(Transform::compile(let_fn, &input()).is_ok());
    }
}
