//! KQL functions that DataFusion has no equivalent for, as DataFusion UDFs.
//! `has` is a hand-tuned UDF of its own; the rest are row-wise kernels
//! wrapped by [`kernel::call`], grouped by family.

pub(crate) mod anomalies;
pub(crate) mod arg_extreme;
pub(crate) mod collect;
pub(crate) mod convert;
pub(crate) mod datetime;
pub(crate) mod dcount;
pub(crate) mod dynamic;
pub(crate) mod expand;
pub(crate) mod geo;
pub(crate) mod geoip;
mod has;
pub(crate) mod ip;
pub(crate) mod ip_text;
pub(crate) mod json_scan;
pub(crate) mod kernel;
pub(crate) mod parse_text;
pub(crate) mod percentile;
pub(crate) mod series;
pub(crate) mod strings;
pub(crate) mod xml;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

static HAS: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(ScalarUDF::from(has::HasFunc::new())));

/// `kql_has(text, term, case_sensitive)`: KQL's `has` term match.
pub(crate) fn has() -> Arc<ScalarUDF> {
    HAS.clone()
}

static ARG_MAX: LazyLock<Arc<AggregateUDF>> =
    LazyLock::new(|| Arc::new(arg_extreme::arg_extreme(arg_extreme::Extreme::Max)));
static ARG_MIN: LazyLock<Arc<AggregateUDF>> =
    LazyLock::new(|| Arc::new(arg_extreme::arg_extreme(arg_extreme::Extreme::Min)));

/// `arg_max_row(key, value)` / `arg_min_row`: the value at the row with the
/// greatest (least) key, per group.
pub(crate) fn arg_extreme(extreme: arg_extreme::Extreme) -> Arc<AggregateUDF> {
    match extreme {
        arg_extreme::Extreme::Max => ARG_MAX.clone(),
        arg_extreme::Extreme::Min => ARG_MIN.clone(),
    }
}

static DCOUNT: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| Arc::new(dcount::dcount()));

/// `kql_dcount(value)`: distinct non-null values per group.
pub(crate) fn dcount() -> Arc<AggregateUDF> {
    DCOUNT.clone()
}

/// Whether an aggregate's `FILTER` (a `countif`-style predicate, as
/// DataFusion passes it) leaves `row` out: false or null.
pub(crate) fn filtered_out(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_some_and(|filter| !filter.is_valid(row) || !filter.value(row))
}
