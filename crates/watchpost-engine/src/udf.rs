//! KQL functions that DataFusion has no equivalent for, as DataFusion UDFs.
//! One file per function under `udf/`.

mod has;

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::ScalarUDF;

static HAS: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(ScalarUDF::from(has::HasFunc::new())));

/// `kql_has(text, term, case_sensitive)`: KQL's `has` term match.
pub(crate) fn has() -> Arc<ScalarUDF> {
    HAS.clone()
}
