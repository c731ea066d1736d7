//! The shared shape of the row-wise KQL functions: a [`KqlFunction`] is a
//! DataFusion UDF that knows the KQL types of its arguments and result
//! (dynamic and string are both UTF-8 in Arrow, so the Arrow types alone
//! cannot tell them apart) and runs a plain [`Kernel`] over whole arrays.
//!
//! Lowering casts every argument to the Arrow type of its KQL type first, so
//! kernels read strings as UTF-8, integers as `Int64`, reals as `Float64`,
//! datetimes and timespans as nanosecond `i64`s.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DurationNanosecondArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{
    DataType, DurationNanosecondType, Float64Type, Int32Type, Int64Type, TimestampNanosecondType,
};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use serde_json::Value as Json;
use watchpost_schema::KqlType;

/// The body of a row-wise function: whole argument arrays in, one array of
/// the return type's Arrow type out.
pub(crate) type Kernel = fn(&Invocation<'_>) -> Result<ArrayRef>;

/// One call of a kernel over a batch.
pub(crate) struct Invocation<'a> {
    pub args: &'a [ArrayRef],
    pub arg_types: &'a [KqlType],
    pub n_rows: usize,
    pub return_type: KqlType,
}

/// Returns the expression calling `kernel` on `args`, whose KQL types are
/// `arg_types`.
pub(crate) fn call(
    name: &'static str,
    kernel: Kernel,
    args: Vec<Expr>,
    arg_types: Vec<KqlType>,
    return_type: KqlType,
) -> Expr {
    let function = KqlFunction {
        name,
        kernel,
        arg_types,
        return_type,
        signature: Signature::one_of(vec![TypeSignature::Nullary, TypeSignature::VariadicAny], Volatility::Immutable),
    };
    ScalarUDF::from(function).call(args)
}

/// A call of a kernel, as an expression holds it.
pub(crate) struct KernelCall<'e> {
    pub name: &'static str,
    pub kernel: Kernel,
    pub args: &'e [Expr],
    pub arg_types: &'e [KqlType],
    pub return_type: KqlType,
}

impl KernelCall<'_> {
    /// The same kernel called on `args` of `arg_types`.
    pub(crate) fn with_args(&self, args: Vec<Expr>, arg_types: Vec<KqlType>) -> Expr {
        call(self.name, self.kernel, args, arg_types, self.return_type)
    }
}

/// The kernel call `expr` is, if it is one.
pub(crate) fn kernel_call(expr: &Expr) -> Option<KernelCall<'_>> {
    let Expr::ScalarFunction(function) = expr else { return None };
    let kql_function = function.func.inner().downcast_ref::<KqlFunction>()?;
    Some(KernelCall {
        name: kql_function.name,
        kernel: kql_function.kernel,
        args: &function.args,
        arg_types: &kql_function.arg_types,
        return_type: kql_function.return_type,
    })
}

#[derive(Debug)]
struct KqlFunction {
    name: &'static str,
    kernel: Kernel,
    arg_types: Vec<KqlType>,
    return_type: KqlType,
    signature: Signature,
}

// Two calls are the same function when name and types agree; the kernel is
// determined by the name.
impl PartialEq for KqlFunction {
    fn eq(&self, other: &KqlFunction) -> bool {
        self.name == other.name && self.arg_types == other.arg_types && self.return_type == other.return_type
    }
}

impl Eq for KqlFunction {}

impl Hash for KqlFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.arg_types.hash(state);
        self.return_type.hash(state);
    }
}

impl ScalarUDFImpl for KqlFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.arrow_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n_rows = args.number_rows;
        let all_scalar = args.args.iter().all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { n_rows };
        // Kernels that read constant arguments through `broadcast_row` get
        // them as one-row arrays instead of a copy per row.
        let broadcast = BROADCAST_KERNELS.contains(&self.name);
        let arrays = args
            .args
            .iter()
            .map(|arg| match arg {
                ColumnarValue::Scalar(scalar) if broadcast => scalar.to_array_of_size(1),
                _ => arg.to_array(rows),
            })
            .map(|array| without_dictionary(array?))
            .collect::<Result<Vec<_>>>()?;
        let invocation =
            Invocation { args: &arrays, arg_types: &self.arg_types, n_rows: rows, return_type: self.return_type };
        let result = (self.kernel)(&invocation)?;
        if all_scalar {
            return Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// `array` with its dictionary, if it has one, expanded into the values'
/// type. Stored string columns are read as dictionaries (see
/// `scan::dictionary_columns`); functions read plain arrays.
pub(crate) fn without_dictionary(array: ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Dictionary(_, values) => Ok(arrow::compute::cast(&array, values)?),
        _ => Ok(array),
    }
}

/// Kernels written to take a constant argument as a one-row array (they
/// index it with [`broadcast_row`]); every other kernel gets each argument
/// as an array of the batch's length.
const BROADCAST_KERNELS: &[&str] = &["extract", "extract_all", "replace_regex"];

/// The row of `array` that holds the value of `row`: 0 for a constant
/// argument passed as a one-row array.
pub(crate) fn broadcast_row(array: &ArrayRef, row: usize) -> usize {
    if array.len() == 1 {
        0
    } else {
        row
    }
}

/// The text at `row` of a UTF-8 array, `None` when null.
pub(crate) fn text_at(array: &ArrayRef, row: usize) -> Option<&str> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Some(array.as_string_view().value(row)),
        _ => None,
    }
}

/// The integer at `row` of an integer or real array (reals truncate).
pub(crate) fn long_at(array: &ArrayRef, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => Some(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Float64 => Some(array.as_primitive::<Float64Type>().value(row) as i64),
        DataType::Utf8 => array.as_string::<i32>().value(row).trim().parse().ok(),
        _ => None,
    }
}

/// The real at `row` of a numeric array.
pub(crate) fn real_at(array: &ArrayRef, row: usize) -> Option<f64> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Float64 => Some(array.as_primitive::<Float64Type>().value(row)),
        _ => long_at(array, row).map(|value| value as f64),
    }
}

/// The nanoseconds at `row` of a datetime or timespan array.
pub(crate) fn nanos_at(array: &ArrayRef, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Timestamp(_, _) => Some(array.as_primitive::<TimestampNanosecondType>().value(row)),
        DataType::Duration(_) => Some(array.as_primitive::<DurationNanosecondType>().value(row)),
        _ => long_at(array, row),
    }
}

/// The value at `row` as JSON, the way a dynamic value holds it: dynamic
/// text is parsed, datetimes and timespans become their Kusto text.
pub(crate) fn json_at(array: &ArrayRef, kql_type: KqlType, row: usize) -> Json {
    if array.is_null(row) {
        return Json::Null;
    }
    match kql_type {
        KqlType::Dynamic => text_at(array, row).map(crate::udf::dynamic::parse_or_string).unwrap_or(Json::Null),
        KqlType::String | KqlType::Guid => {
            text_at(array, row).map(|text| Json::String(text.into())).unwrap_or(Json::Null)
        }
        KqlType::Bool => Json::Bool(array.as_boolean().value(row)),
        KqlType::Int | KqlType::Long => long_at(array, row).map(Json::from).unwrap_or(Json::Null),
        KqlType::Real | KqlType::Decimal => {
            real_at(array, row).and_then(serde_json::Number::from_f64).map(Json::Number).unwrap_or(Json::Null)
        }
        KqlType::Datetime => nanos_at(array, row)
            .map(|nanos| Json::String(crate::udf::datetime::datetime_text(nanos)))
            .unwrap_or(Json::Null),
        KqlType::Timespan => {
            nanos_at(array, row).map(|nanos| Json::String(crate::result::format_timespan(nanos))).unwrap_or(Json::Null)
        }
    }
}

pub(crate) fn strings(values: impl IntoIterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

pub(crate) fn longs(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int64Array>())
}

pub(crate) fn ints(values: impl IntoIterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int32Array>())
}

pub(crate) fn reals(values: impl IntoIterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Float64Array>())
}

pub(crate) fn bools(values: impl IntoIterator<Item = Option<bool>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<BooleanArray>())
}

pub(crate) fn datetimes(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<TimestampNanosecondArray>().with_timezone("UTC"))
}

pub(crate) fn timespans(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<DurationNanosecondArray>())
}

/// Dynamic values out: JSON text, SQL null for a missing value.
pub(crate) fn dynamics(values: impl IntoIterator<Item = Option<Json>>) -> ArrayRef {
    strings(values.into_iter().map(|value| value.map(|json| json.to_string())))
}

/// An array of the return type holding the value of a KQL cell typed
/// `kql_type`, converting the JSON values `values` the way `to<type>()`
/// converts a dynamic value.
pub(crate) fn typed_from_json(kql_type: KqlType, values: Vec<Option<Json>>) -> ArrayRef {
    use crate::udf::convert::{
        json_to_bool, json_to_nanos_datetime, json_to_nanos_timespan, json_to_real, json_to_string,
    };
    let values = values.into_iter();
    match kql_type {
        KqlType::Dynamic => dynamics(values),
        KqlType::String | KqlType::Guid => {
            strings(values.map(|value| Some(value.map(|v| json_to_string(&v)).unwrap_or_default())))
        }
        KqlType::Bool => bools(values.map(|value| value.and_then(|v| json_to_bool(&v)))),
        KqlType::Int => ints(values.map(|value| value.and_then(|v| json_to_real(&v)).map(|v| v as i32))),
        KqlType::Long => longs(values.map(|value| value.and_then(|v| crate::udf::convert::json_to_long(&v)))),
        KqlType::Real | KqlType::Decimal => reals(values.map(|value| value.and_then(|v| json_to_real(&v)))),
        KqlType::Datetime => datetimes(values.map(|value| value.and_then(|v| json_to_nanos_datetime(&v)))),
        KqlType::Timespan => timespans(values.map(|value| value.and_then(|v| json_to_nanos_timespan(&v)))),
    }
}
