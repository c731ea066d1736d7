//! Signatures of the built-in scalar and aggregate functions: which names
//! exist (including deprecated aliases real content still uses), how many
//! arguments they take, and what type they return.

use watchpost_schema::KqlType;

use crate::bound::{AggregateFunction, ScalarFunction};

/// How a scalar function's return type follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returns {
    Type(KqlType),
    /// The type of the argument at this position.
    Arg(usize),
    /// Decided by the binder from the bound arguments (`extract` with
    /// `typeof(T)`, `coalesce`, `max_of`).
    Special,
}

/// One scalar function's signature: its names (the first is the current
/// one, the rest are synonyms and deprecated aliases), its accepted argument
/// counts (inclusive) and its return type rule.
pub(crate) struct Signature {
    pub names: &'static [&'static str],
    pub function: ScalarFunction,
    pub min_args: usize,
    pub max_args: usize,
    pub returns: Returns,
}

/// The upper bound for variadic functions, as Kusto's.
const MANY: usize = 64;

const fn sig(
    names: &'static [&'static str],
    function: ScalarFunction,
    min_args: usize,
    max_args: usize,
    returns: Returns,
) -> Signature {
    Signature { names, function, min_args, max_args, returns }
}

/// Every built-in scalar function.
pub(crate) const SIGNATURES: &[Signature] = {
    use KqlType::{Bool, Datetime, Dynamic, Int, Long, Real, String as Str, Timespan};
    use Returns::{Arg, Special, Type};
    use ScalarFunction as F;
    &[
        sig(&["now"], F::Now, 0, 1, Type(Datetime)),
        sig(&["ago"], F::Ago, 1, 1, Type(Datetime)),
        sig(&["bin", "floor"], F::Bin, 2, 2, Arg(0)),
        sig(&["ingestion_time"], F::IngestionTime, 0, 0, Type(Datetime)),
        // Strings.
        sig(&["tolower"], F::ToLower, 1, 1, Type(Str)),
        sig(&["toupper"], F::ToUpper, 1, 1, Type(Str)),
        sig(&["strlen"], F::StrLen, 1, 1, Type(Long)),
        sig(&["strcat"], F::StrCat, 1, MANY, Type(Str)),
        sig(&["strcat_delim"], F::StrCatDelim, 3, MANY, Type(Str)),
        sig(&["substring"], F::Substring, 2, 3, Type(Str)),
        sig(&["split"], F::Split, 2, 3, Type(Dynamic)),
        sig(&["replace_string"], F::ReplaceString, 3, 3, Type(Str)),
        sig(&["replace_regex", "replace"], F::ReplaceRegex, 3, 3, Type(Str)),
        sig(&["extract"], F::Extract, 3, 4, Special),
        sig(&["extract_all", "extractall"], F::ExtractAll, 2, 3, Type(Dynamic)),
        sig(&["indexof"], F::IndexOf, 2, 5, Type(Long)),
        sig(&["trim"], F::Trim, 2, 2, Type(Str)),
        sig(&["trim_start"], F::TrimStart, 2, 2, Type(Str)),
        sig(&["trim_end"], F::TrimEnd, 2, 2, Type(Str)),
        sig(&["reverse"], F::Reverse, 1, 1, Type(Str)),
        sig(&["countof"], F::CountOf, 2, 3, Type(Long)),
        sig(&["strrep"], F::StrRep, 2, 3, Type(Str)),
        sig(&["base64_encode_tostring", "base64_encodestring"], F::Base64EncodeToString, 1, 1, Type(Str)),
        sig(&["base64_decode_tostring", "base64_decodestring"], F::Base64DecodeToString, 1, 1, Type(Str)),
        sig(&["hash_sha256"], F::HashSha256, 1, 1, Type(Str)),
        sig(&["hash_sha1"], F::HashSha1, 1, 1, Type(Str)),
        sig(&["hash_md5"], F::HashMd5, 1, 1, Type(Str)),
        // Conversions. Watchpost has no decimal arithmetic: todecimal gives a real.
        sig(&["tostring"], F::ToString, 1, 1, Type(Str)),
        sig(&["tolong"], F::ToLong, 1, 1, Type(Long)),
        sig(&["toint"], F::ToInt, 1, 1, Type(Int)),
        sig(&["toreal", "todouble", "todecimal"], F::ToReal, 1, 1, Type(Real)),
        sig(&["tobool", "toboolean"], F::ToBool, 1, 1, Type(Bool)),
        sig(&["todatetime"], F::ToDatetime, 1, 1, Type(Datetime)),
        sig(&["totimespan", "totime"], F::ToTimespan, 1, 1, Type(Timespan)),
        // Null and emptiness.
        sig(&["isnull"], F::IsNull, 1, 1, Type(Bool)),
        sig(&["isnotnull", "notnull"], F::IsNotNull, 1, 1, Type(Bool)),
        sig(&["isempty"], F::IsEmpty, 1, 1, Type(Bool)),
        sig(&["isnotempty", "notempty"], F::IsNotEmpty, 1, 1, Type(Bool)),
        // Conditionals.
        sig(&["iff", "iif"], F::Iff, 3, 3, Arg(1)),
        sig(&["case"], F::Case, 3, 2 * MANY + 1, Arg(1)),
        sig(&["coalesce"], F::Coalesce, 1, MANY, Special),
        sig(&["max_of"], F::MaxOf, 1, MANY, Special),
        sig(&["min_of"], F::MinOf, 1, MANY, Special),
        // Math.
        sig(&["abs"], F::Abs, 1, 1, Arg(0)),
        sig(&["round"], F::Round, 1, 2, Type(Real)),
        sig(&["ceiling"], F::Ceiling, 1, 1, Arg(0)),
        sig(&["sign"], F::Sign, 1, 1, Arg(0)),
        sig(&["sqrt"], F::Sqrt, 1, 1, Type(Real)),
        sig(&["exp"], F::Exp, 1, 1, Type(Real)),
        sig(&["exp2"], F::Exp2, 1, 1, Type(Real)),
        sig(&["exp10"], F::Exp10, 1, 1, Type(Real)),
        sig(&["log"], F::Log, 1, 1, Type(Real)),
        sig(&["log2"], F::Log2, 1, 1, Type(Real)),
        sig(&["log10"], F::Log10, 1, 1, Type(Real)),
        sig(&["pow"], F::Pow, 2, 2, Type(Real)),
        // Datetimes and timespans.
        sig(&["startofday"], F::StartOfDay, 1, 2, Type(Datetime)),
        sig(&["startofweek"], F::StartOfWeek, 1, 2, Type(Datetime)),
        sig(&["startofmonth"], F::StartOfMonth, 1, 2, Type(Datetime)),
        sig(&["startofyear"], F::StartOfYear, 1, 2, Type(Datetime)),
        sig(&["endofday"], F::EndOfDay, 1, 2, Type(Datetime)),
        sig(&["endofweek"], F::EndOfWeek, 1, 2, Type(Datetime)),
        sig(&["endofmonth"], F::EndOfMonth, 1, 2, Type(Datetime)),
        sig(&["endofyear"], F::EndOfYear, 1, 2, Type(Datetime)),
        sig(&["datetime_part", "datepart"], F::DatetimePart, 2, 2, Type(Int)),
        sig(&["getyear"], F::GetYear, 1, 1, Type(Int)),
        sig(&["getmonth"], F::GetMonth, 1, 1, Type(Int)),
        sig(&["dayofweek"], F::DayOfWeek, 1, 1, Type(Timespan)),
        sig(&["dayofmonth"], F::DayOfMonth, 1, 1, Type(Int)),
        sig(&["dayofyear"], F::DayOfYear, 1, 1, Type(Int)),
        sig(&["hourofday"], F::HourOfDay, 1, 1, Type(Int)),
        sig(&["week_of_year", "weekofyear"], F::WeekOfYear, 1, 1, Type(Int)),
        sig(&["datetime_diff"], F::DatetimeDiff, 3, 3, Type(Long)),
        sig(&["datetime_add"], F::DatetimeAdd, 3, 3, Type(Datetime)),
        sig(&["format_datetime"], F::FormatDatetime, 2, 2, Type(Str)),
        sig(&["format_timespan"], F::FormatTimespan, 2, 2, Type(Str)),
        sig(&["make_datetime"], F::MakeDatetime, 3, 7, Type(Datetime)),
        sig(&["unixtime_seconds_todatetime"], F::UnixtimeSecondsToDatetime, 1, 1, Type(Datetime)),
        sig(&["unixtime_milliseconds_todatetime"], F::UnixtimeMillisecondsToDatetime, 1, 1, Type(Datetime)),
        sig(&["unixtime_microseconds_todatetime"], F::UnixtimeMicrosecondsToDatetime, 1, 1, Type(Datetime)),
        sig(&["unixtime_nanoseconds_todatetime"], F::UnixtimeNanosecondsToDatetime, 1, 1, Type(Datetime)),
        // Dynamic values.
        sig(&["parse_json", "todynamic", "parsejson", "toobject"], F::ParseJson, 1, 1, Type(Dynamic)),
        sig(&["array_length", "arraylength"], F::ArrayLength, 1, 1, Type(Long)),
        sig(&["bag_keys"], F::BagKeys, 1, 1, Type(Dynamic)),
        sig(&["bag_pack", "pack"], F::BagPack, 0, 2 * MANY, Type(Dynamic)),
        sig(&["pack_array"], F::PackArray, 1, MANY, Type(Dynamic)),
        sig(&["array_concat"], F::ArrayConcat, 1, MANY, Type(Dynamic)),
        sig(&["set_union"], F::SetUnion, 2, MANY, Type(Dynamic)),
        sig(&["set_intersect"], F::SetIntersect, 2, MANY, Type(Dynamic)),
        sig(&["set_difference"], F::SetDifference, 2, MANY, Type(Dynamic)),
        sig(&["array_slice"], F::ArraySlice, 3, 3, Type(Dynamic)),
        sig(&["array_sort_asc"], F::ArraySortAsc, 1, 2, Type(Dynamic)),
        sig(&["array_sort_desc"], F::ArraySortDesc, 1, 2, Type(Dynamic)),
        sig(&["array_index_of"], F::ArrayIndexOf, 2, 2, Type(Long)),
        sig(&["set_has_element"], F::SetHasElement, 2, 2, Type(Bool)),
        sig(&["strcat_array"], F::StrcatArray, 2, 2, Type(Str)),
        // Geospatial.
        sig(&["geo_distance_2points"], F::GeoDistance2Points, 4, 4, Type(Real)),
        sig(&["geo_info_from_ip_address"], F::GeoInfoFromIpAddress, 1, 1, Type(Dynamic)),
        sig(&["geo_location"], F::GeoLocation, 1, 1, Type(Dynamic)),
        // IP addresses.
        sig(&["ipv4_is_in_range"], F::Ipv4IsInRange, 2, 2, Type(Bool)),
        sig(&["ipv4_is_private"], F::Ipv4IsPrivate, 1, 1, Type(Bool)),
        sig(&["ipv4_compare"], F::Ipv4Compare, 2, 3, Type(Long)),
        sig(&["ipv4_is_match"], F::Ipv4IsMatch, 2, 3, Type(Bool)),
        sig(&["parse_ipv4"], F::ParseIpv4, 1, 1, Type(Long)),
        sig(&["has_ipv4"], F::HasIpv4, 2, 2, Type(Bool)),
        sig(&["has_ipv4_prefix"], F::HasIpv4Prefix, 2, 2, Type(Bool)),
        sig(&["has_any_ipv4"], F::HasAnyIpv4, 2, MANY, Type(Bool)),
        sig(&["has_any_ipv4_prefix"], F::HasAnyIpv4Prefix, 2, MANY, Type(Bool)),
        // Structured text.
        sig(&["parse_url", "parseurl"], F::ParseUrl, 1, 1, Type(Dynamic)),
        sig(&["url_decode"], F::UrlDecode, 1, 1, Type(Str)),
        sig(&["parse_path"], F::ParsePath, 1, 1, Type(Dynamic)),
        sig(&["parse_xml"], F::ParseXml, 1, 1, Type(Dynamic)),
        sig(&["parse_cef_dictionary"], F::ParseCefDictionary, 1, 1, Type(Dynamic)),
        // Series. A name with a dot cannot be written as a call: the binder
        // rewrites `series_decompose_anomalies()` in `extend` into these.
        sig(&[ANOMALY_FLAGS], F::SeriesAnomalyFlags, 1, 7, Type(Dynamic)),
        sig(&[ANOMALY_SCORES], F::SeriesAnomalyScores, 1, 7, Type(Dynamic)),
        sig(&[ANOMALY_BASELINE], F::SeriesAnomalyBaseline, 1, 7, Type(Dynamic)),
    ]
};

pub(crate) const ANOMALY_FLAGS: &str = "series_decompose_anomalies.ad_flag";
pub(crate) const ANOMALY_SCORES: &str = "series_decompose_anomalies.ad_score";
pub(crate) const ANOMALY_BASELINE: &str = "series_decompose_anomalies.baseline";

/// Functions that return several values, each with the internal function
/// giving it and the suffix Kusto adds to a single name (`x_ad_flag`).
pub(crate) fn multi_valued(name: &str) -> Option<&'static [(&'static str, &'static str)]> {
    match name {
        "series_decompose_anomalies" => {
            Some(&[(ANOMALY_FLAGS, "_ad_flag"), (ANOMALY_SCORES, "_ad_score"), (ANOMALY_BASELINE, "_baseline")])
        }
        _ => None,
    }
}

/// Looks up a scalar function by any of its KQL names (case-sensitive, as
/// Kusto's).
pub(crate) fn scalar(name: &str) -> Option<&'static Signature> {
    SIGNATURES.iter().find(|signature| signature.names.contains(&name))
}

/// Every scalar and aggregate name, for "did you mean" hints.
pub(crate) fn all_names() -> impl Iterator<Item = &'static str> {
    SIGNATURES
        .iter()
        .flat_map(|signature| signature.names.iter().copied())
        .filter(|name| !name.contains('.'))
        .chain(["series_decompose_anomalies"])
        .chain(AGGREGATE_NAMES.iter().copied())
}

const AGGREGATE_NAMES: &[&str] = &[
    "count",
    "countif",
    "sum",
    "avg",
    "min",
    "max",
    "dcount",
    "dcountif",
    "any",
    "take_any",
    "arg_max",
    "arg_min",
    "percentile",
    "percentiles",
    "make_list",
    "make_set",
    "make_list_if",
    "make_set_if",
    "take_anyif",
];

/// Whether `name` is an aggregate that `summarize` binds specially
/// (several output columns or constant arguments).
pub(crate) fn is_special_aggregate(name: &str) -> bool {
    matches!(name, "arg_max" | "argmax" | "arg_min" | "argmin" | "percentile" | "percentiles")
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
        "dcountif" => DCountIf,
        "any" | "take_any" => Any,
        "sumif" => SumIf,
        "avgif" => AvgIf,
        "count_distinct" => CountDistinct,
        "stdev" => Stdev,
        "stdevp" => StdevP,
        "variance" => Variance,
        "variancep" => VarianceP,
        "make_list" | "makelist" => MakeList,
        "make_set" | "makeset" => MakeSet,
        "make_list_if" => MakeListIf,
        "make_set_if" => MakeSetIf,
        "take_anyif" | "anyif" => TakeAnyIf,
        "make_bag" => MakeBag,
        _ => return None,
    })
}

/// The accepted argument counts of an aggregate, inclusive.
pub(crate) fn aggregate_arity(function: AggregateFunction) -> (usize, usize) {
    match function {
        AggregateFunction::Count => (0, 0),
        AggregateFunction::DCount => (1, 2),
        // The optional last argument is the accuracy, which an exact count
        // ignores.
        AggregateFunction::DCountIf => (2, 3),
        AggregateFunction::SumIf | AggregateFunction::AvgIf | AggregateFunction::TakeAnyIf => (2, 2),
        // The optional last argument is the largest number of elements.
        AggregateFunction::MakeList | AggregateFunction::MakeSet => (1, 2),
        AggregateFunction::MakeListIf | AggregateFunction::MakeSetIf => (2, 3),
        _ => (1, 1),
    }
}

/// The result type of an aggregate over an argument of type `arg`.
pub(crate) fn aggregate_return_type(function: AggregateFunction, arg: Option<KqlType>) -> KqlType {
    match function {
        AggregateFunction::Count
        | AggregateFunction::CountIf
        | AggregateFunction::DCount
        | AggregateFunction::DCountIf
        | AggregateFunction::CountDistinct => KqlType::Long,
        AggregateFunction::Avg
        | AggregateFunction::AvgIf
        | AggregateFunction::Stdev
        | AggregateFunction::StdevP
        | AggregateFunction::Variance
        | AggregateFunction::VarianceP => KqlType::Real,
        AggregateFunction::MakeList
        | AggregateFunction::MakeSet
        | AggregateFunction::MakeListIf
        | AggregateFunction::MakeSetIf
        | AggregateFunction::MakeBag => KqlType::Dynamic,
        AggregateFunction::Sum | AggregateFunction::SumIf => match arg {
            Some(KqlType::Int) | Some(KqlType::Long) => KqlType::Long,
            Some(other) => other,
            None => KqlType::Long,
        },
        AggregateFunction::Min | AggregateFunction::Max | AggregateFunction::Any | AggregateFunction::TakeAnyIf => {
            arg.unwrap_or(KqlType::String)
        }
        // Bound by `summarize`, which types them from the returned value.
        AggregateFunction::ArgMax | AggregateFunction::ArgMin | AggregateFunction::Percentile => {
            arg.unwrap_or(KqlType::Dynamic)
        }
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
        AggregateFunction::DCountIf => "dcountif",
        AggregateFunction::Any => "any",
        AggregateFunction::SumIf => "sumif",
        AggregateFunction::AvgIf => "avgif",
        AggregateFunction::CountDistinct => "count_distinct",
        AggregateFunction::Stdev => "stdev",
        AggregateFunction::StdevP => "stdevp",
        AggregateFunction::Variance => "variance",
        AggregateFunction::VarianceP => "variancep",
        AggregateFunction::MakeList | AggregateFunction::MakeListIf => "list",
        AggregateFunction::MakeSet | AggregateFunction::MakeSetIf => "set",
        AggregateFunction::TakeAnyIf => "anyif",
        AggregateFunction::MakeBag => "bag",
        AggregateFunction::ArgMax => "max",
        AggregateFunction::ArgMin => "min",
        AggregateFunction::Percentile => "percentile",
    }
}
