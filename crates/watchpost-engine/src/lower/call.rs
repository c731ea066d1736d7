//! Lowering of scalar function calls: DataFusion built-ins where their
//! semantics match KQL's, row-wise kernels from `udf` elsewhere.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::functions::core::expr_fn as core_fn;
use datafusion::functions::{math as math_fn, string as str_fn, unicode as uni_fn};
use datafusion::logical_expr::{cast, try_cast, when, Expr};
use datafusion::prelude::{ident, lit};
use watchpost_kql_binder::bound::{BoundExpr, ExprKind, ScalarFunction, Value};
use watchpost_schema::{KqlType, TIME_RECEIVED};

use super::{datetime_literal, lower_bin, lower_expr, now_literal, LowerContext};
use crate::optimize::fuse_paths;
use crate::udf::datetime::Period;
use crate::udf::geoip::{self, GeoFlavor};
use crate::udf::kernel::{self, Kernel};
use crate::udf::{anomalies, convert, datetime, dynamic, geo, ip, ip_text, parse_text, series, strings, xml};

const NANOS_PER_TICK: i64 = 100;

/// How a kernel receives one argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// As the Arrow type of its KQL type.
    Raw,
    /// Converted to text the way `tostring()` converts it.
    Text,
}

struct Call<'a, 'c> {
    args: &'a [BoundExpr],
    ty: KqlType,
    context: &'a LowerContext<'c>,
}

impl Call<'_, '_> {
    fn arg(&self, idx: usize) -> Result<Expr> {
        lower_expr(&self.args[idx], self.context)
    }

    fn text(&self, idx: usize) -> Result<Expr> {
        as_text(&self.args[idx], self.context)
    }

    fn real(&self, idx: usize) -> Result<Expr> {
        Ok(cast(self.arg(idx)?, DataType::Float64))
    }

    /// Calls `kernel` on every argument, passing the first `text_args` as
    /// text and the rest raw.
    fn kernel(&self, name: &'static str, kernel: Kernel, passes: &[Pass]) -> Result<Expr> {
        self.kernel_on(name, kernel, self.args, passes, self.ty)
    }

    fn kernel_on(
        &self,
        name: &'static str,
        kernel: Kernel,
        args: &[BoundExpr],
        passes: &[Pass],
        return_type: KqlType,
    ) -> Result<Expr> {
        let mut exprs = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for (idx, arg) in args.iter().enumerate() {
            let pass = passes.get(idx).or(passes.last()).copied().unwrap_or(Pass::Raw);
            if pass == Pass::Text {
                exprs.push(as_text(arg, self.context)?);
                types.push(KqlType::String);
            } else {
                exprs.push(lower_expr(arg, self.context)?);
                types.push(arg.ty);
            }
        }
        Ok(kernel::call(name, kernel, exprs, types, return_type))
    }

    /// The argument cast to the call's result type (for `iff`, `case`...).
    fn arg_as_result(&self, idx: usize) -> Result<Expr> {
        convert_to(&self.args[idx], self.ty, self.context)
    }

    /// A datetime part of argument 0, as `datetime_part` gives it.
    fn part(&self, part: &str) -> Result<Expr> {
        let exprs = vec![lit(part), self.arg(0)?];
        Ok(kernel::call(
            "datetime_part",
            datetime::datetime_part,
            exprs,
            vec![KqlType::String, KqlType::Datetime],
            self.ty,
        ))
    }
}

pub(super) fn lower_call(
    function: ScalarFunction,
    args: &[BoundExpr],
    ty: KqlType,
    context: &LowerContext<'_>,
) -> Result<Expr> {
    use ScalarFunction as F;
    let call = Call { args, ty, context };
    let literal_nanos = |idx: usize| match args.get(idx).map(|arg| &arg.kind) {
        Some(ExprKind::Literal(Value::Timespan(v))) => Some(*v),
        _ => None,
    };
    Ok(match function {
        F::Now => match literal_nanos(0) {
            Some(offset) => datetime_literal(context.now_ns + offset),
            None if args.is_empty() => now_literal(context),
            None => now_literal(context) + call.arg(0)?,
        },
        F::Ago => match literal_nanos(0) {
            Some(span) => datetime_literal(context.now_ns - span),
            None => now_literal(context) - call.arg(0)?,
        },
        F::Bin => lower_bin(args, context)?,
        F::IngestionTime => ident(TIME_RECEIVED),
        F::ToLower => str_fn::lower().call(vec![call.text(0)?]),
        F::ToUpper => str_fn::upper().call(vec![call.text(0)?]),
        F::StrLen => cast(uni_fn::character_length().call(vec![call.text(0)?]), DataType::Int64),
        F::StrCat => str_fn::concat().call(texts(args, context)?),
        F::StrCatDelim => str_fn::concat_ws().call(texts(args, context)?),
        F::Substring => {
            // KQL counts from 0, DataFusion from 1.
            let mut call_args = vec![call.text(0)?, cast(call.arg(1)?, DataType::Int64) + lit(1i64)];
            if args.len() == 3 {
                call_args.push(cast(call.arg(2)?, DataType::Int64));
            }
            uni_fn::substr().call(call_args)
        }
        F::Split => call.kernel("split", strings::split, &[Pass::Text, Pass::Text, Pass::Raw])?,
        F::ReplaceString => str_fn::replace().call(texts(args, context)?),
        F::ReplaceRegex => call.kernel("replace_regex", strings::replace_regex, &[Pass::Text])?,
        F::Extract => {
            let text = call.kernel_on(
                "extract",
                strings::extract,
                &args[..3],
                &[Pass::Text, Pass::Raw, Pass::Text],
                KqlType::String,
            )?;
            convert_expr(text, KqlType::String, ty)
        }
        F::ExtractAll => {
            let passes: &[Pass] = if args.len() == 3 { &[Pass::Text, Pass::Raw, Pass::Text] } else { &[Pass::Text] };
            call.kernel("extract_all", strings::extract_all, passes)?
        }
        F::IndexOf => call.kernel("indexof", strings::indexof, &[Pass::Text, Pass::Text, Pass::Raw])?,
        F::Trim => call.kernel("trim", strings::trim, &[Pass::Text])?,
        F::TrimStart => call.kernel("trim_start", strings::trim_start, &[Pass::Text])?,
        F::TrimEnd => call.kernel("trim_end", strings::trim_end, &[Pass::Text])?,
        F::Reverse => uni_fn::reverse().call(vec![call.text(0)?]),
        F::CountOf => call.kernel("countof", strings::countof, &[Pass::Text])?,
        F::StrRep => call.kernel("strrep", strings::strrep, &[Pass::Text, Pass::Raw, Pass::Text])?,
        F::Base64EncodeToString => call.kernel("base64_encode_tostring", strings::base64_encode, &[Pass::Text])?,
        F::Base64DecodeToString => call.kernel("base64_decode_tostring", strings::base64_decode, &[Pass::Text])?,
        F::HashSha256 => call.kernel("hash_sha256", strings::hash_sha256, &[Pass::Text])?,
        F::HashSha1 => call.kernel("hash_sha1", strings::hash_sha1, &[Pass::Text])?,
        F::HashMd5 => call.kernel("hash_md5", strings::hash_md5, &[Pass::Text])?,
        F::ToString => call.text(0)?,
        F::ToLong | F::ToInt | F::ToReal | F::ToBool | F::ToDatetime | F::ToTimespan => {
            convert_to(&args[0], ty, context)?
        }
        F::IsNull => match args[0].ty {
            // Kusto strings are never null: a missing string is "".
            KqlType::String => lit(false),
            _ => call.arg(0)?.is_null(),
        },
        F::IsNotNull => match args[0].ty {
            KqlType::String => lit(true),
            _ => call.arg(0)?.is_not_null(),
        },
        F::IsEmpty => {
            let text = call.text(0)?;
            text.clone().is_null().or(text.eq(lit("")))
        }
        F::IsNotEmpty => {
            let text = call.text(0)?;
            text.clone().is_not_null().and(text.not_eq(lit("")))
        }
        F::Iff => when(call.arg(0)?, call.arg_as_result(1)?).otherwise(call.arg_as_result(2)?)?,
        F::Case => {
            let mut branches = when(call.arg(0)?, call.arg_as_result(1)?);
            for pair in (2..args.len() - 1).step_by(2) {
                branches = branches.when(call.arg(pair)?, call.arg_as_result(pair + 1)?);
            }
            branches.otherwise(call.arg_as_result(args.len() - 1)?)?
        }
        F::Coalesce => {
            let values = (0..args.len()).map(|idx| call.arg_as_result(idx)).collect::<Result<Vec<_>>>()?;
            match ty {
                // For strings, Kusto skips empty values as well as nulls.
                KqlType::String => {
                    core_fn::coalesce(values.into_iter().map(|value| core_fn::nullif(value, lit(""))).collect())
                }
                _ => core_fn::coalesce(values),
            }
        }
        F::MaxOf | F::MinOf => {
            let values = (0..args.len()).map(|idx| call.arg_as_result(idx)).collect::<Result<Vec<_>>>()?;
            if function == F::MaxOf {
                core_fn::greatest(values)
            } else {
                core_fn::least(values)
            }
        }
        F::Abs => math_fn::abs().call(vec![call.arg(0)?]),
        F::Round => {
            let mut call_args = vec![call.real(0)?];
            if args.len() == 2 {
                call_args.push(cast(call.arg(1)?, DataType::Int64));
            }
            math_fn::round().call(call_args)
        }
        F::Ceiling => cast(math_fn::ceil().call(vec![call.real(0)?]), ty.arrow_type()),
        F::Sign => cast(math_fn::signum().call(vec![call.real(0)?]), ty.arrow_type()),
        F::Sqrt => null_when_negative(call.real(0)?, |x| math_fn::sqrt().call(vec![x])),
        F::Log => null_when_negative(call.real(0)?, |x| math_fn::ln().call(vec![x])),
        F::Log2 => null_when_negative(call.real(0)?, |x| math_fn::log2().call(vec![x])),
        F::Log10 => null_when_negative(call.real(0)?, |x| math_fn::log10().call(vec![x])),
        F::Exp => math_fn::exp().call(vec![call.real(0)?]),
        F::Exp2 => math_fn::power().call(vec![lit(2.0f64), call.real(0)?]),
        F::Exp10 => math_fn::power().call(vec![lit(10.0f64), call.real(0)?]),
        F::Pow => math_fn::power().call(vec![call.real(0)?, call.real(1)?]),
        F::StartOfDay => call.kernel("startofday", |c| datetime::start_of_period(c, Period::Day), &[])?,
        F::StartOfWeek => call.kernel("startofweek", |c| datetime::start_of_period(c, Period::Week), &[])?,
        F::StartOfMonth => call.kernel("startofmonth", |c| datetime::start_of_period(c, Period::Month), &[])?,
        F::StartOfYear => call.kernel("startofyear", |c| datetime::start_of_period(c, Period::Year), &[])?,
        F::EndOfDay => call.kernel("endofday", |c| datetime::end_of_period(c, Period::Day), &[])?,
        F::EndOfWeek => call.kernel("endofweek", |c| datetime::end_of_period(c, Period::Week), &[])?,
        F::EndOfMonth => call.kernel("endofmonth", |c| datetime::end_of_period(c, Period::Month), &[])?,
        F::EndOfYear => call.kernel("endofyear", |c| datetime::end_of_period(c, Period::Year), &[])?,
        F::DatetimePart => call.kernel("datetime_part", datetime::datetime_part, &[Pass::Text, Pass::Raw])?,
        F::GetYear => call.part("year")?,
        F::GetMonth => call.part("month")?,
        F::DayOfMonth => call.part("day")?,
        F::DayOfYear => call.part("dayofyear")?,
        F::HourOfDay => call.part("hour")?,
        F::WeekOfYear => call.part("week_of_year")?,
        F::DayOfWeek => call.kernel("dayofweek", datetime::day_of_week, &[])?,
        F::DatetimeDiff => call.kernel("datetime_diff", datetime::datetime_diff, &[Pass::Text, Pass::Raw])?,
        F::DatetimeAdd => call.kernel("datetime_add", datetime::datetime_add, &[Pass::Text, Pass::Raw])?,
        F::FormatDatetime => call.kernel("format_datetime", datetime::format_datetime, &[Pass::Raw, Pass::Text])?,
        F::FormatTimespan => call.kernel("format_timespan", datetime::format_timespan, &[Pass::Raw, Pass::Text])?,
        F::MakeDatetime => call.kernel("make_datetime", datetime::make_datetime, &[])?,
        F::UnixtimeSecondsToDatetime => {
            call.kernel("unixtime_seconds", |c| datetime::unixtime(c, 1_000_000_000), &[])?
        }
        F::UnixtimeMillisecondsToDatetime => {
            call.kernel("unixtime_millis", |c| datetime::unixtime(c, 1_000_000), &[])?
        }
        F::UnixtimeMicrosecondsToDatetime => call.kernel("unixtime_micros", |c| datetime::unixtime(c, 1_000), &[])?,
        F::UnixtimeNanosecondsToDatetime => call.kernel("unixtime_nanos", |c| datetime::unixtime(c, 1), &[])?,
        F::ParseJson => call.kernel(dynamic::PARSE_JSON, dynamic::parse_json, &[])?,
        // `parse_json(s).a` reads the path on `s` itself.
        F::DynamicGet => fuse_paths(call.kernel(dynamic::GET_PATH, dynamic::get_path, &[])?),
        F::ArrayLength => call.kernel("array_length", dynamic::array_length, &[])?,
        F::BagKeys => call.kernel("bag_keys", dynamic::bag_keys, &[])?,
        F::BagPack => call.kernel("bag_pack", dynamic::bag_pack, &[])?,
        F::PackArray => call.kernel("pack_array", dynamic::pack_array, &[])?,
        F::ArrayConcat => call.kernel("array_concat", dynamic::array_concat, &[])?,
        F::SetUnion => call.kernel("set_union", dynamic::set_union, &[])?,
        F::SetIntersect => call.kernel("set_intersect", dynamic::set_intersect, &[])?,
        F::SetDifference => call.kernel("set_difference", dynamic::set_difference, &[])?,
        F::ArraySlice => call.kernel("array_slice", dynamic::array_slice, &[])?,
        F::ArraySortAsc => call.kernel("array_sort_asc", dynamic::array_sort_asc, &[])?,
        F::ArraySortDesc => call.kernel("array_sort_desc", dynamic::array_sort_desc, &[])?,
        F::ArrayIndexOf => call.kernel("array_index_of", dynamic::array_index_of, &[])?,
        F::SetHasElement => call.kernel("set_has_element", dynamic::set_has_element, &[])?,
        F::StrcatArray => call.kernel("strcat_array", dynamic::strcat_array, &[Pass::Raw, Pass::Text])?,
        F::GeoDistance2Points => {
            let coordinates = (0..4).map(|idx| call.real(idx)).collect::<Result<Vec<_>>>()?;
            kernel::call(
                "geo_distance_2points",
                geo::geo_distance_2points,
                coordinates,
                vec![KqlType::Real; 4],
                call.ty,
            )
        }
        F::GeoInfoFromIpAddress => geoip::call(GeoFlavor::Info, call.context.geo.cloned(), call.text(0)?),
        F::GeoLocation => geoip::call(GeoFlavor::Location, call.context.geo.cloned(), call.text(0)?),
        F::UrlDecode => call.kernel("url_decode", strings::url_decode, &[Pass::Text])?,
        F::HasIpv4 => call.kernel("has_ipv4", ip_text::has_ipv4, &[Pass::Text, Pass::Text])?,
        F::HasIpv4Prefix => call.kernel("has_ipv4_prefix", ip_text::has_ipv4_prefix, &[Pass::Text, Pass::Text])?,
        F::HasAnyIpv4 => call.kernel("has_any_ipv4", ip_text::has_any_ipv4, &ip_list_passes(call.args))?,
        F::HasAnyIpv4Prefix => {
            call.kernel("has_any_ipv4_prefix", ip_text::has_any_ipv4_prefix, &ip_list_passes(call.args))?
        }
        F::Ipv4IsInRange => call.kernel("ipv4_is_in_range", ip::ipv4_is_in_range, &[Pass::Text])?,
        F::Ipv4IsPrivate => call.kernel("ipv4_is_private", ip::ipv4_is_private, &[Pass::Text])?,
        F::Ipv4Compare => call.kernel("ipv4_compare", ip::ipv4_compare, &[Pass::Text, Pass::Text, Pass::Raw])?,
        F::Ipv4IsMatch => call.kernel("ipv4_is_match", ip::ipv4_is_match, &[Pass::Text, Pass::Text, Pass::Raw])?,
        F::ParseIpv4 => call.kernel("parse_ipv4", ip::parse_ipv4, &[Pass::Text])?,
        F::ParseUrl => call.kernel("parse_url", parse_text::parse_url, &[Pass::Text])?,
        F::ParsePath => call.kernel("parse_path", parse_text::parse_path, &[Pass::Text])?,
        F::ParseXml => call.kernel("parse_xml", xml::parse_xml, &[Pass::Text])?,
        F::ParseCefDictionary => {
            call.kernel("parse_cef_dictionary", parse_text::parse_cef_dictionary, &[Pass::Text])?
        }
        F::SeriesFill => call.kernel("series_fill", series::series_fill, &[])?,
        F::SeriesAxis => call.kernel("series_axis", series::series_axis, &[])?,
        // Distinct names: calls that share a name and arguments are merged.
        F::SeriesAnomalyFlags => call.kernel("series_decompose_anomalies_flag", anomalies::anomaly_flags, &[])?,
        F::SeriesAnomalyScores => call.kernel("series_decompose_anomalies_score", anomalies::anomaly_scores, &[])?,
        F::SeriesAnomalyBaseline => {
            call.kernel("series_decompose_anomalies_baseline", anomalies::anomaly_baseline, &[])?
        }
    })
}

/// The text first, then each address argument as text unless it is a
/// dynamic array of addresses.
fn ip_list_passes(args: &[BoundExpr]) -> Vec<Pass> {
    let mut passes = vec![Pass::Text];
    passes.extend(args[1..].iter().map(|arg| if arg.ty == KqlType::Dynamic { Pass::Raw } else { Pass::Text }));
    passes
}

fn texts(args: &[BoundExpr], context: &LowerContext<'_>) -> Result<Vec<Expr>> {
    args.iter().map(|arg| as_text(arg, context)).collect()
}

/// `f(x)` for non-negative `x`, null for negative `x` (as KQL's `sqrt` and
/// `log` define it, where IEEE would give NaN).
fn null_when_negative(value: Expr, f: impl Fn(Expr) -> Expr) -> Expr {
    when(value.clone().lt(lit(0.0f64)), lit(ScalarValue::Float64(None)))
        .otherwise(f(value))
        .expect("a single when/otherwise is well-formed")
}

/// `expr` as text, the way `tostring()` converts it: dynamic strings lose
/// their quotes, datetimes and timespans take Kusto's forms, null is "".
pub(super) fn as_text(expr: &BoundExpr, context: &LowerContext<'_>) -> Result<Expr> {
    let lowered = lower_expr(expr, context)?;
    Ok(match expr.ty {
        KqlType::String | KqlType::Guid => lowered,
        KqlType::Int | KqlType::Long => cast(lowered, DataType::Utf8),
        // `tostring(d.a)` reads the path as text.
        KqlType::Dynamic => fuse_paths(kernel::call(
            convert::TO_STRING,
            convert::to_string,
            vec![lowered],
            vec![KqlType::Dynamic],
            KqlType::String,
        )),
        other => kernel::call(convert::TO_STRING, convert::to_string, vec![lowered], vec![other], KqlType::String),
    })
}

/// `expr` converted to `target` as KQL's `to<type>()` functions convert.
pub(super) fn convert_to(expr: &BoundExpr, target: KqlType, context: &LowerContext<'_>) -> Result<Expr> {
    if target == KqlType::String && expr.ty != KqlType::String {
        return as_text(expr, context);
    }
    Ok(convert_expr(lower_expr(expr, context)?, expr.ty, target))
}

/// Converts an already lowered expression of KQL type `source` to `target`.
pub(super) fn convert_expr(lowered: Expr, source: KqlType, target: KqlType) -> Expr {
    use KqlType::*;
    let ticks_to_span = |ticks: Expr| {
        cast(cast(ticks, DataType::Int64) * lit(NANOS_PER_TICK), DataType::Duration(TimeUnit::Nanosecond))
    };
    match (source, target) {
        _ if source == target => lowered,
        // `d.a == "x"` reads the path as text.
        (Dynamic, String) => {
            fuse_paths(kernel::call(convert::CONVERT, convert::convert, vec![lowered], vec![source], target))
        }
        (Dynamic, _) | (String, Datetime | Timespan | Bool) => {
            kernel::call(convert::CONVERT, convert::convert, vec![lowered], vec![source], target)
        }
        (_, String) => kernel::call(convert::TO_STRING, convert::to_string, vec![lowered], vec![source], String),
        (Datetime | Timespan, Long | Int | Real) => {
            try_cast(cast(lowered, DataType::Int64) / lit(NANOS_PER_TICK), target.arrow_type())
        }
        (Long | Int | Real, Timespan) => ticks_to_span(lowered),
        _ => try_cast(lowered, target.arrow_type()),
    }
}
