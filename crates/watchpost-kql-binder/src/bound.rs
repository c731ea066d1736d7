//! The bound query tree: every name resolved, every expression typed, every
//! tabular node carrying its output schema. The engine lowers this tree and
//! never needs to check names or types again.

use watchpost_kql_syntax::ast::{BinaryOp, ListOp};
use watchpost_schema::{KqlType, TableSchema};

/// A tabular value and its output columns.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundTabular {
    pub kind: TabularKind,
    pub schema: TableSchema,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TabularKind {
    /// A stored table, read in full (the engine adds time pruning).
    Table {
        name: String,
    },
    /// Literal rows (`datatable`, `print`), row-major, typed as `schema`.
    Values {
        rows: Vec<Vec<Value>>,
    },
    Filter {
        input: Box<BoundTabular>,
        predicate: BoundExpr,
    },
    /// Computes exactly the output columns, in order.
    Project {
        input: Box<BoundTabular>,
        columns: Vec<(String, BoundExpr)>,
    },
    /// Group-by columns first, then aggregates, as `summarize` outputs them.
    Aggregate {
        input: Box<BoundTabular>,
        group_by: Vec<(String, BoundExpr)>,
        aggregates: Vec<(String, BoundAggregate)>,
    },
    Sort {
        input: Box<BoundTabular>,
        keys: Vec<BoundSortKey>,
    },
    Limit {
        input: Box<BoundTabular>,
        count: u64,
    },
    Distinct {
        input: Box<BoundTabular>,
    },
    /// `range Col from a to b step s`: the arithmetic sequence from `from`
    /// up to and including `to` (down, for a negative step). The bounds are
    /// constant expressions; the output column is `schema`'s only column.
    Range {
        from: BoundExpr,
        to: BoundExpr,
        step: BoundExpr,
    },
    /// Rows of `left` and `right` matched on equal key columns (indices
    /// into each side's schema); the output columns are given by
    /// [`crate::join_outputs`].
    Join {
        left: Box<BoundTabular>,
        right: Box<BoundTabular>,
        kind: JoinKind,
        keys: Vec<(usize, usize)>,
    },
    /// The rows of every input, each aligned to `schema` by column name
    /// (missing columns are null); `source_column`, when set, is the first
    /// output column and names each row's input.
    Union {
        inputs: Vec<UnionInput>,
        source_column: Option<String>,
    },
    /// `serialize`: the input's rows, marked as ordered.
    Serialize {
        input: Box<BoundTabular>,
    },
    /// The input's columns followed by window functions over its rows in
    /// their current order (`row_number()`, `prev()`, `next()`). `order` is
    /// that order as sort keys over the input's columns, when a `sort`
    /// below defined it; empty for rows serialized in arrival order.
    Window {
        input: Box<BoundTabular>,
        columns: Vec<(String, BoundWindow)>,
        order: Vec<BoundSortKey>,
        /// Rows with equal values here are numbered separately (internal
        /// uses such as `top-nested`; KQL's own window calls leave it empty).
        partition: Vec<BoundExpr>,
    },
    /// `mv-expand`: one row per element of the expanded values (zipped,
    /// padded with nulls). Each output column is an expanded column (by
    /// name), the item index column, or the input column of that name.
    MvExpand {
        input: Box<BoundTabular>,
        columns: Vec<ExpandColumn>,
        item_index: Option<String>,
        limit: Option<u64>,
    },
}

/// One column `mv-expand` expands.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandColumn {
    pub name: String,
    /// The dynamic array or bag to expand.
    pub expr: BoundExpr,
    /// Property bags become `{key: value}` bags (`bagexpansion=bag`, the
    /// default) or `[key, value]` arrays (`bagexpansion=array`).
    pub bags_as_arrays: bool,
    /// The type each element is converted to (`to typeof(T)`).
    pub ty: KqlType,
}

/// A window function over serialized rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundWindow {
    pub function: WindowFunction,
    pub args: Vec<BoundExpr>,
    pub ty: KqlType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    /// `row_number([start])`.
    RowNumber,
    /// `prev(expr [, offset [, default]])`.
    Prev,
    /// `next(expr [, offset [, default]])`.
    Next,
    /// `row_cumsum(expr)`: the running total up to and including the row.
    RowCumsum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Kusto's default: the left side is first reduced to one row per key.
    InnerUnique,
    Inner,
    LeftOuter,
    RightOuter,
    FullOuter,
    LeftAnti,
    RightAnti,
    LeftSemi,
    RightSemi,
    /// `lookup`: a left outer join that leaves out the right key columns.
    LookupLeftOuter,
    LookupInner,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnionInput {
    /// The table name, or `union_argN`, for `withsource`.
    pub source: String,
    pub tabular: BoundTabular,
}

impl BoundTabular {
    /// The name of the table this pipeline starts from, if it reads one.
    pub fn source_tables(&self) -> Vec<String> {
        match &self.kind {
            TabularKind::Table { name } => vec![name.clone()],
            TabularKind::Values { .. } | TabularKind::Range { .. } => Vec::new(),
            TabularKind::Join { left, right, .. } => {
                let mut tables = left.source_tables();
                tables.extend(right.source_tables());
                tables
            }
            TabularKind::Union { inputs, .. } => {
                inputs.iter().flat_map(|input| input.tabular.source_tables()).collect()
            }
            TabularKind::Filter { input, predicate } => {
                let mut tables = input.source_tables();
                tables.extend(predicate.subquery_tables());
                tables
            }
            TabularKind::Project { input, columns } => {
                let mut tables = input.source_tables();
                tables.extend(columns.iter().flat_map(|(_, expr)| expr.subquery_tables()));
                tables
            }
            TabularKind::Aggregate { input, .. }
            | TabularKind::Sort { input, .. }
            | TabularKind::Limit { input, .. }
            | TabularKind::Distinct { input }
            | TabularKind::Serialize { input }
            | TabularKind::Window { input, .. }
            | TabularKind::MvExpand { input, .. } => input.source_tables(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BoundSortKey {
    pub expr: BoundExpr,
    pub descending: bool,
    pub nulls_first: bool,
}

/// A typed scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundExpr {
    pub kind: ExprKind,
    pub ty: KqlType,
}

impl BoundExpr {
    /// The tables read by `toscalar()` subqueries inside this expression.
    pub fn subquery_tables(&self) -> Vec<String> {
        match &self.kind {
            ExprKind::Column(_) | ExprKind::Literal(_) => Vec::new(),
            ExprKind::ScalarSubquery(tabular) => tabular.source_tables(),
            ExprKind::InSubquery { expr, tabular, .. } => {
                let mut tables = expr.subquery_tables();
                tables.extend(tabular.source_tables());
                tables
            }
            ExprKind::Not(inner) | ExprKind::Negate(inner) => inner.subquery_tables(),
            ExprKind::Binary { left, right, .. } => {
                let mut tables = left.subquery_tables();
                tables.extend(right.subquery_tables());
                tables
            }
            ExprKind::InList { expr, list, .. } => {
                std::iter::once(expr.as_ref()).chain(list).flat_map(BoundExpr::subquery_tables).collect()
            }
            ExprKind::Between { expr, low, high, .. } => {
                [expr, low, high].into_iter().flat_map(|expr| expr.subquery_tables()).collect()
            }
            ExprKind::Call { args, .. } | ExprKind::Window(BoundWindow { args, .. }) => {
                args.iter().flat_map(BoundExpr::subquery_tables).collect()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Column(String),
    Literal(Value),
    Not(Box<BoundExpr>),
    Negate(Box<BoundExpr>),
    Binary {
        op: BinaryOp,
        left: Box<BoundExpr>,
        right: Box<BoundExpr>,
    },
    InList {
        op: ListOp,
        expr: Box<BoundExpr>,
        list: Vec<BoundExpr>,
    },
    Between {
        expr: Box<BoundExpr>,
        low: Box<BoundExpr>,
        high: Box<BoundExpr>,
        negated: bool,
    },
    Call {
        function: ScalarFunction,
        args: Vec<BoundExpr>,
    },
    /// A window function; the binder lifts these into a
    /// [`TabularKind::Window`] below the operator that uses them, so lowering
    /// only meets them there.
    Window(BoundWindow),
    /// `toscalar(tabular)`: the first column of the first row, null when
    /// there is no row.
    ScalarSubquery(Box<BoundTabular>),
    /// `expr in (query)` (`!in` when `negated`): whether the value is in the
    /// first column of the query.
    InSubquery {
        negated: bool,
        expr: Box<BoundExpr>,
        tabular: Box<BoundTabular>,
    },
}

/// A literal value. Datetimes are nanoseconds since the Unix epoch and
/// timespans are nanoseconds, matching storage.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Real(f64),
    String(String),
    Datetime(i64),
    Timespan(i64),
    Guid(String),
    Dynamic(String),
}

/// Built-in scalar functions known to the binder. `functions::SIGNATURES`
/// gives each its KQL names, arity and return type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarFunction {
    // Time and clock.
    Now,
    Ago,
    Bin,
    IngestionTime,
    // Strings.
    ToLower,
    ToUpper,
    StrLen,
    StrCat,
    StrCatDelim,
    Substring,
    Split,
    ReplaceString,
    ReplaceRegex,
    Extract,
    ExtractAll,
    IndexOf,
    Trim,
    TrimStart,
    TrimEnd,
    Reverse,
    CountOf,
    StrRep,
    Base64EncodeToString,
    Base64DecodeToString,
    HashSha256,
    HashSha1,
    HashMd5,
    // Conversions.
    ToString,
    ToLong,
    ToInt,
    ToReal,
    ToBool,
    ToDatetime,
    ToTimespan,
    // Null and emptiness.
    IsNull,
    IsNotNull,
    IsEmpty,
    IsNotEmpty,
    // Conditionals.
    Iff,
    Case,
    Coalesce,
    MaxOf,
    MinOf,
    // Math.
    Abs,
    Round,
    Ceiling,
    Sign,
    Sqrt,
    Exp,
    Exp2,
    Exp10,
    Log,
    Log2,
    Log10,
    Pow,
    // Datetimes and timespans.
    StartOfDay,
    StartOfWeek,
    StartOfMonth,
    StartOfYear,
    EndOfDay,
    EndOfWeek,
    EndOfMonth,
    EndOfYear,
    DatetimePart,
    GetYear,
    GetMonth,
    DayOfWeek,
    DayOfMonth,
    DayOfYear,
    HourOfDay,
    WeekOfYear,
    DatetimeDiff,
    DatetimeAdd,
    FormatDatetime,
    FormatTimespan,
    MakeDatetime,
    UnixtimeSecondsToDatetime,
    UnixtimeMillisecondsToDatetime,
    UnixtimeMicrosecondsToDatetime,
    UnixtimeNanosecondsToDatetime,
    // Dynamic values.
    ParseJson,
    /// `d.a`, `d["a"]`, `d[0]`: the value at a path of keys and indexes,
    /// one argument per step after the dynamic value.
    DynamicGet,
    ArrayLength,
    BagKeys,
    BagPack,
    PackArray,
    ArrayConcat,
    SetUnion,
    SetIntersect,
    SetDifference,
    ArraySlice,
    ArraySortAsc,
    ArraySortDesc,
    ArrayIndexOf,
    SetHasElement,
    StrcatArray,
    GeoDistance2Points,
    /// `geo_info_from_ip_address(ip)`: country, state, city and coordinates.
    GeoInfoFromIpAddress,
    /// `geo_location(ip)`, the DCR transform function: the same with the
    /// continent as `region`.
    GeoLocation,
    UrlDecode,
    HasIpv4,
    HasIpv4Prefix,
    HasAnyIpv4,
    HasAnyIpv4Prefix,
    // IP addresses.
    Ipv4IsInRange,
    Ipv4IsPrivate,
    Ipv4Compare,
    Ipv4IsMatch,
    ParseIpv4,
    // Structured text.
    ParseUrl,
    ParsePath,
    ParseXml,
    /// The extension of a CEF record as a bag of strings (Azure's DCR
    /// transform function, available in queries too).
    ParseCefDictionary,
    // Internal to `make-series`, not callable by name.
    /// `(list of [index, value] pairs, from, to, step, default)`: the dense
    /// series array, `default` where no pair gives a value.
    SeriesFill,
    /// `(from, to, step)`: the axis array `from, from + step, ...` below `to`.
    SeriesAxis,
    /// The three outputs of `series_decompose_anomalies()`, bound one
    /// per column by `extend (flag, score, baseline) = ...`.
    SeriesAnomalyFlags,
    SeriesAnomalyScores,
    SeriesAnomalyBaseline,
}

/// An aggregate call in `summarize`.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundAggregate {
    pub function: AggregateFunction,
    pub args: Vec<BoundExpr>,
    pub ty: KqlType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    Count,
    CountIf,
    Sum,
    Avg,
    Min,
    Max,
    DCount,
    /// `dcountif(value, predicate)`.
    DCountIf,
    Any,
    SumIf,
    AvgIf,
    CountDistinct,
    /// Sample standard deviation (`stdev`), and of the population (`stdevp`).
    Stdev,
    StdevP,
    Variance,
    VarianceP,
    /// Dynamic arrays of the non-null values: all of them, or the distinct ones.
    MakeList,
    MakeSet,
    /// `make_list_if(x, predicate [, max])` and `make_set_if`: over the
    /// rows where the predicate holds.
    MakeListIf,
    MakeSetIf,
    /// `take_anyif(x, predicate)`: any value from a row where the predicate holds.
    TakeAnyIf,
    /// One property bag merged from bags.
    MakeBag,
    /// `arg_max(key, value)`: `value` at the row where `key` is largest
    /// (one aggregate per returned column).
    ArgMax,
    /// `arg_min(key, value)`.
    ArgMin,
    /// `percentile(value, p)` by nearest rank; `p` is a real literal.
    Percentile,
}
