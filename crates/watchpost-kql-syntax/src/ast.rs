//! The KQL syntax tree. Every node carries the [`Span`] of the text it came
//! from, so later phases can point at the exact place a problem is.
//!
//! The tree mirrors the language, not any engine: operator nodes are named
//! after KQL operators (`WhereOp` is `OperatorKind::Where`, ...), and nothing
//! here knows about schemas or types.

use watchpost_diagnostics::Span;

/// A whole query: `let` statements followed by (at most) one tabular
/// expression whose result is returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub statements: Vec<Statement>,
    pub span: Span,
}

/// One `;`-separated statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `let name = expr;` (a scalar or a tabular value).
    Let(LetStmt),
    /// A tabular expression whose result the query returns.
    Tabular(TabularExpr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LetStmt {
    pub name: Ident,
    pub value: LetValue,
    pub span: Span,
}

/// What a `let` binds.
#[derive(Debug, Clone, PartialEq)]
pub enum LetValue {
    Scalar(Expr),
    Tabular(TabularExpr),
    /// `(x: long, y: long = 2) { body }`: a user-defined scalar function.
    Function(FunctionDef),
}

/// The parameters and body of a `let` function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    pub params: Vec<FunctionParam>,
    /// `let` statements at the start of the body, in scope for the rest.
    pub lets: Vec<LetStmt>,
    pub body: FunctionBody,
}

/// What a `let` function computes.
#[derive(Debug, Clone, PartialEq)]
pub enum FunctionBody {
    /// `{ x * 2 }`: a value per call.
    Scalar(Expr),
    /// `{ T | take n }`: a table, called as a query source (`f(10) | count`).
    Tabular(TabularExpr),
}

/// `name: type [= default]` in a function's parameter list.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionParam {
    pub name: Ident,
    pub param_type: ParamType,
    pub default: Option<Expr>,
}

/// The declared type of a function parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    /// A scalar type name such as `long` or `string`.
    Scalar(Ident),
    /// `(Col: type, ...)` or `(*)`: a table with at least these columns;
    /// `any_columns` when a `*` allows others.
    Tabular { columns: Vec<ColumnDecl>, any_columns: bool },
}

/// A name as written, with its span. Bracketed names (`['my col']`) are
/// stored without the brackets and quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `source | op | op ...`
#[derive(Debug, Clone, PartialEq)]
pub struct TabularExpr {
    pub source: TabularSource,
    pub operators: Vec<Operator>,
    pub span: Span,
}

/// Where rows of a pipeline come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TabularSource {
    /// A table or a tabular `let` name.
    Table(Ident),
    /// `union [params] T, (q), ...` starting a query.
    Union { params: Vec<(Ident, Ident)>, tables: Vec<TabularExpr>, span: Span },
    /// `print a = 1, b = "x"`: one row.
    Print(Vec<NamedExpr>),
    /// `datatable(Col: type, ...) [ v1, v2, ... ]`, values row-major.
    Datatable { columns: Vec<ColumnDecl>, values: Vec<Expr>, span: Span },
    /// `range Col from start to stop step step`.
    Range { column: Ident, from: Expr, to: Expr, step: Expr, span: Span },
    /// `( tabular )`.
    Parenthesized(Box<TabularExpr>),
    /// `f(args)`: a call of a tabular `let` function (an [`ExprKind::Call`]).
    FunctionCall(Expr),
}

/// A `name: type` pair as in `datatable(...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDecl {
    pub name: Ident,
    /// The type name as written (`string`, `long`, `datetime`...).
    pub type_name: Ident,
}

/// One pipe operator with the span from its keyword to its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub kind: OperatorKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperatorKind {
    /// `where predicate` (also `filter`).
    Where(Expr),
    /// `project a, b = expr`.
    Project(Vec<NamedExpr>),
    /// `project-away a, b`.
    ProjectAway(Vec<Ident>),
    /// `project-rename new = old, ...`.
    ProjectRename(Vec<(Ident, Ident)>),
    /// `extend a = expr, expr`.
    Extend(Vec<NamedExpr>),
    /// `summarize aggs by keys`; either list may be empty (not both).
    Summarize { aggregates: Vec<NamedExpr>, by: Vec<NamedExpr> },
    /// `sort by k [asc|desc] [nulls first|last], ...` (also `order by`).
    Sort(Vec<SortKey>),
    /// `take n` (also `limit n`).
    Take(Expr),
    /// `top n by key [asc|desc] [nulls first|last]`.
    Top { count: Expr, key: SortKey },
    /// `count`.
    Count,
    /// `distinct a, b`.
    Distinct(Vec<Expr>),
    /// `project-keep a, b`: keeps these columns, in the input's order.
    ProjectKeep(Vec<Ident>),
    /// `project-reorder a, b`: puts these columns first.
    ProjectReorder(Vec<Ident>),
    /// `join [kind=K] [hint.x=y] (right) on keys`, or `lookup` (then
    /// `is_lookup`).
    Join { is_lookup: bool, kind: Option<Ident>, right: Box<TabularExpr>, on: Vec<JoinKey> },
    /// `union [kind=inner|outer] [withsource=Col] [isfuzzy=true] T, (q), ...`.
    Union { params: Vec<(Ident, Ident)>, tables: Vec<TabularExpr> },
    /// `as Name`: names the value so far for the rest of the query.
    As(Ident),
    /// `getschema`: one row per input column.
    GetSchema,
    /// `serialize [name = expr, ...]`: marks the rows as ordered, so window
    /// functions such as `row_number()` may follow.
    Serialize(Vec<NamedExpr>),
    /// `mv-expand [with_itemindex=I] Col [to typeof(T)], ... [limit n]`.
    MvExpand(MvExpand),
    /// `mv-apply [with_itemindex=I] v = Col [to typeof(T)], ... [limit n]
    /// on (operators)`: the operators run once per input row over the
    /// expanded values.
    MvApply { expand: MvExpand, subquery: Vec<Operator> },
    /// `parse [kind=simple|regex|relaxed [flags=F]] expr with pattern`, or
    /// `parse-where ...` (then `drops_unmatched`).
    Parse { kind: Option<Ident>, flags: Option<Ident>, drops_unmatched: bool, source: Expr, pattern: Vec<ParsePart> },
    /// `search [kind=case_sensitive|case_insensitive] predicate`.
    Search { kind: Option<Ident>, predicate: Expr },
    /// `make-series agg [default = d], ... on Axis from a to b step s [by keys]`.
    MakeSeries(MakeSeries),
    /// `top-nested [n] of key by agg [asc|desc], top-nested ...`.
    TopNested(Vec<TopNestedLevel>),
    /// `evaluate plugin(args)`.
    Evaluate { plugin: Ident, args: Vec<Expr> },
    /// `invoke f(args)`: calls the tabular function `f` with the input as
    /// its first (tabular) argument.
    Invoke(Expr),
    /// `render visualization [with (property = value, ...)]`: how a client
    /// should chart the result; the rows pass through unchanged. A property
    /// may have several values (`ycolumns = A, B`).
    Render { visualization: Ident, properties: Vec<(Ident, Vec<Expr>)> },
}

/// One `top-nested` level.
#[derive(Debug, Clone, PartialEq)]
pub struct TopNestedLevel {
    /// `None` keeps every value.
    pub count: Option<Expr>,
    pub of: NamedExpr,
    /// `with others = value`.
    pub others: Option<Expr>,
    pub by: NamedExpr,
    pub order: Option<SortOrder>,
}

/// The clauses of `make-series`.
#[derive(Debug, Clone, PartialEq)]
pub struct MakeSeries {
    pub aggregates: Vec<SeriesAggregate>,
    pub axis: Ident,
    pub from: Option<Expr>,
    pub to: Option<Expr>,
    pub step: Expr,
    pub by: Vec<NamedExpr>,
}

/// `[name =] aggregate [default = value]` in `make-series`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesAggregate {
    pub aggregate: NamedExpr,
    pub default: Option<Expr>,
}

/// What `mv-expand` and `mv-apply` expand.
#[derive(Debug, Clone, PartialEq)]
pub struct MvExpand {
    /// `bagexpansion=...` and `with_itemindex=...`, as written.
    pub params: Vec<(Ident, Ident)>,
    pub items: Vec<MvExpandItem>,
    pub limit: Option<Expr>,
}

/// `[name =] expr [to typeof(T)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MvExpandItem {
    pub expr: NamedExpr,
    pub to_type: Option<Ident>,
}

/// One element of a `parse` pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsePart {
    /// A string constant the text must contain (a regex for `kind=regex`).
    Literal(String),
    /// `*`: any text, not captured.
    Wildcard,
    /// `Name[: type]`: the text here becomes a new column.
    Column { name: Ident, type_name: Option<Ident> },
}

/// One `on` condition of a join.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinKey {
    /// `Col`: equal values of the column of that name on both sides.
    Column(Ident),
    /// `$left.A == $right.B`.
    Pair { left: Ident, right: Ident },
}

/// `name = expr` or a bare `expr` (the name is then derived by the binder).
/// In `extend`, `(A, B) = expr` names each value of a function returning
/// several; `name` is then `None` and `tuple` holds the names.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedExpr {
    pub name: Option<Ident>,
    pub tuple: Vec<Ident>,
    pub expr: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Ascending,
    Descending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsOrder {
    First,
    Last,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub expr: Expr,
    /// `None` when not written; KQL's default is descending.
    pub order: Option<SortOrder>,
    /// `None` when not written; KQL's default is nulls last for descending
    /// and nulls first for ascending.
    pub nulls: Option<NullsOrder>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    /// A column, a scalar `let` name.
    Name(Ident),
    /// `f(args)`; `count()` has no arguments.
    Call {
        name: Ident,
        args: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `expr in (a, b)`, `!in`, `in~`, `!in~`, `has_any (...)`, `has_all (...)`.
    InList {
        op: ListOp,
        expr: Box<Expr>,
        list: Vec<Expr>,
    },
    /// `expr between (low .. high)`, `!between`.
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// `( expr )`, kept so the printer can round-trip.
    Paren(Box<Expr>),
    /// `expr.name` on a dynamic value.
    Member {
        expr: Box<Expr>,
        name: Ident,
    },
    /// `expr[index]` on a dynamic value.
    Index {
        expr: Box<Expr>,
        index: Box<Expr>,
    },
    /// `*` as an argument (`arg_max(T, *)`).
    Star,
    /// `toscalar(tabular)`: the first column of the first row.
    ToScalar(Box<TabularExpr>),
    /// `expr in (tabular)`, `!in`...: membership in the first column of a query.
    InTabular {
        op: ListOp,
        expr: Box<Expr>,
        tabular: Box<TabularExpr>,
    },
    /// `name = value` as a call argument (`f(limit = 10)`), matched to a
    /// user function's parameter by name.
    NamedArg {
        name: Ident,
        value: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null` only appears typed (`long(null)`); `Null(None)` is a bare
    /// `dynamic(null)`.
    Null(Option<String>),
    Bool(bool),
    /// Integer literals; KQL types them as `long`.
    Long(i64),
    /// `int(5)`.
    Int(i32),
    Real(f64),
    String(String),
    /// `datetime(...)`, as 100 ns ticks since 1970-01-01T00:00:00Z.
    Datetime(i64),
    /// `1d`, `time(1.00:00:00)`, as 100 ns ticks.
    Timespan(i64),
    /// `guid(...)`, lower-case dashed text.
    Guid(String),
    /// `dynamic(...)`: the literal's JSON text, as written.
    Dynamic(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    /// `=~`
    EqTilde,
    /// `!~`
    NotEqTilde,
    Has,
    NotHas,
    HasCs,
    NotHasCs,
    Contains,
    NotContains,
    ContainsCs,
    NotContainsCs,
    StartsWith,
    NotStartsWith,
    StartsWithCs,
    NotStartsWithCs,
    EndsWith,
    NotEndsWith,
    EndsWithCs,
    NotEndsWithCs,
    HasPrefix,
    HasSuffix,
    /// `matches regex`
    MatchesRegex,
}

impl BinaryOp {
    /// The operator as KQL writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::NotEq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::EqTilde => "=~",
            BinaryOp::NotEqTilde => "!~",
            BinaryOp::Has => "has",
            BinaryOp::NotHas => "!has",
            BinaryOp::HasCs => "has_cs",
            BinaryOp::NotHasCs => "!has_cs",
            BinaryOp::Contains => "contains",
            BinaryOp::NotContains => "!contains",
            BinaryOp::ContainsCs => "contains_cs",
            BinaryOp::NotContainsCs => "!contains_cs",
            BinaryOp::StartsWith => "startswith",
            BinaryOp::NotStartsWith => "!startswith",
            BinaryOp::StartsWithCs => "startswith_cs",
            BinaryOp::NotStartsWithCs => "!startswith_cs",
            BinaryOp::EndsWith => "endswith",
            BinaryOp::NotEndsWith => "!endswith",
            BinaryOp::EndsWithCs => "endswith_cs",
            BinaryOp::NotEndsWithCs => "!endswith_cs",
            BinaryOp::HasPrefix => "hasprefix",
            BinaryOp::HasSuffix => "hassuffix",
            BinaryOp::MatchesRegex => "matches regex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOp {
    In,
    NotIn,
    /// `in~`
    InCi,
    /// `!in~`
    NotInCi,
    HasAny,
    HasAll,
}

impl ListOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ListOp::In => "in",
            ListOp::NotIn => "!in",
            ListOp::InCi => "in~",
            ListOp::NotInCi => "!in~",
            ListOp::HasAny => "has_any",
            ListOp::HasAll => "has_all",
        }
    }
}
