//! Signatures of the built-in scalar and aggregate functions: which names
//! exist (including deprecated aliases real content still uses), how many
//! arguments they take, and what type they return.

use watchpost_schema::KqlType;

use crate::bound::{AggregateFunction, ScalarFunction};

/// Looks up a scalar function by its KQL name.
pub(crate) fn scalar(name: &str) -> Option<ScalarFunction> {
    use ScalarFunction::*;
    Some(match name {
        "now" => Now,
        "ago" => Ago,
        "bin" | "floor" => Bin,
        "ingestion_time" => IngestionTime,
        "tolower" => ToLower,
        "toupper" => ToUpper,
        "strlen" => StrLen,
        "strcat" => StrCat,
        "substring" => Substring,
        "tostring" => ToString,
        "tolong" => ToLong,
        "toint" => ToInt,
        "toreal" | "todouble" => ToReal,
        "tobool" | "toboolean" => ToBool,
        "todatetime" => ToDatetime,
        "totimespan" | "totime" => ToTimespan,
        "isnull" => IsNull,
        "isnotnull" => IsNotNull,
        "isempty" => IsEmpty,
        "isnotempty" => IsNotEmpty,
        "iff" | "iif" => Iff,
        "abs" => Abs,
        "round" => Round,
        "startofday" => StartOfDay,
        _ => return None,
    })
}

/// The accepted argument counts of a scalar function, inclusive.
pub(crate) fn scalar_arity(function: ScalarFunction) -> (usize, usize) {
    use ScalarFunction::*;
    match function {
        Now => (0, 1),
        IngestionTime => (0, 0),
        Bin | Floor => (2, 2),
        Substring => (2, 3),
        StrCat => (1, 64),
        Iff => (3, 3),
        Round => (1, 2),
        _ => (1, 1),
    }
}

/// The return type of a scalar function given its argument types.
pub(crate) fn scalar_return_type(function: ScalarFunction, args: &[KqlType]) -> KqlType {
    use ScalarFunction::*;
    match function {
        Now | Ago | IngestionTime | ToDatetime | StartOfDay => KqlType::Datetime,
        Bin | Floor | Abs => args.first().copied().unwrap_or(KqlType::Real),
        ToLower | ToUpper | StrCat | Substring | ToString => KqlType::String,
        StrLen | ToLong => KqlType::Long,
        ToInt => KqlType::Int,
        ToReal | Round => KqlType::Real,
        ToBool | IsNull | IsNotNull | IsEmpty | IsNotEmpty => KqlType::Bool,
        ToTimespan => KqlType::Timespan,
        Iff => args.get(1).copied().unwrap_or(KqlType::String),
    }
}

/// Looks up an aggregate function by its KQL name.
pub(crate) fn aggregate(name: &str) -> Option<AggregateFunction> {
    use AggregateFunction::*;
    Some(match name {
        "count" => Count,
        "countif" => CountIf,
        "sum" => Sum,
        "avg" => Avg,
        "min" => Min,
        "max" => Max,
        "dcount" => DCount,
        "any" | "take_any" => Any,
        _ => return None,
    })
}

/// The accepted argument counts of an aggregate, inclusive.
pub(crate) fn aggregate_arity(function: AggregateFunction) -> (usize, usize) {
    match function {
        AggregateFunction::Count => (0, 0),
        AggregateFunction::DCount => (1, 2),
        _ => (1, 1),
    }
}

/// The result type of an aggregate over an argument of type `arg`.
pub(crate) fn aggregate_return_type(function: AggregateFunction, arg: Option<KqlType>) -> KqlType {
    match function {
        AggregateFunction::Count | AggregateFunction::CountIf | AggregateFunction::DCount => KqlType::Long,
        AggregateFunction::Avg => KqlType::Real,
        AggregateFunction::Sum => match arg {
            Some(KqlType::Int) | Some(KqlType::Long) => KqlType::Long,
            Some(other) => other,
            None => KqlType::Long,
        },
        AggregateFunction::Min | AggregateFunction::Max | AggregateFunction::Any => arg.unwrap_or(KqlType::String),
    }
}

/// The prefix Kusto uses to name an unnamed aggregate column (`count_`,
/// `sum_X`...).
pub(crate) fn aggregate_prefix(function: AggregateFunction) -> &'static str {
    match function {
        AggregateFunction::Count => "count",
        AggregateFunction::CountIf => "countif",
        AggregateFunction::Sum => "sum",
        AggregateFunction::Avg => "avg",
        AggregateFunction::Min => "min",
        AggregateFunction::Max => "max",
        AggregateFunction::DCount => "dcount",
        AggregateFunction::Any => "any",
    }
}
