//! The list-valued helpers behind `mv-expand`: DataFusion's `unnest` turns
//! list elements into rows, and these UDFs turn dynamic values (JSON text)
//! into those lists.
//!
//! `mv_expand_list(value, bags_as_arrays)` gives the elements of an array,
//! the entries of a bag (`{"k": v}` each, or `["k", v]` with
//! `bags_as_arrays`), one null for a null value and the value itself for any
//! other scalar; an empty array or bag gives no element, so its row goes.
//! `mv_expand_index(list, ...)` gives `0..n` for the longest of its lists.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use serde_json::Value as Json;

use super::kernel::text_at;

/// `mv_expand_list(dynamic, bags_as_arrays)`.
pub(crate) fn expand_list(value: Expr, bags_as_arrays: bool) -> Expr {
    let function = ExpandList { signature: Signature::any(1, Volatility::Immutable), bags_as_arrays };
    ScalarUDF::from(function).call(vec![value])
}

/// `mv_expand_index(list, ...)`.
pub(crate) fn expand_index(lists: Vec<Expr>) -> Expr {
    let function =
        ExpandIndex { signature: Signature::one_of(vec![TypeSignature::VariadicAny], Volatility::Immutable) };
    ScalarUDF::from(function).call(lists)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandList {
    signature: Signature,
    bags_as_arrays: bool,
}

impl ScalarUDFImpl for ExpandList {
    fn name(&self) -> &str {
        "mv_expand_list"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = super::kernel::without_dictionary(args.args[0].to_array(args.number_rows)?)?;
        let mut builder = ListBuilder::new(StringBuilder::new());
        for row in 0..values.len() {
            let Some(text) = text_at(&values, row) else {
                builder.values().append_null();
                builder.append(true);
                continue;
            };
            let json = super::dynamic::parse_or_string(text);
            match json {
                Json::Array(items) => items.iter().for_each(|item| builder.values().append_value(item.to_string())),
                Json::Object(entries) => {
                    for (key, value) in entries {
                        let entry = if self.bags_as_arrays {
                            Json::Array(vec![Json::String(key), value])
                        } else {
                            Json::Object([(key, value)].into_iter().collect())
                        };
                        builder.values().append_value(entry.to_string());
                    }
                }
                Json::Null => builder.values().append_null(),
                scalar => builder.values().append_value(scalar.to_string()),
            }
            builder.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(builder.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandIndex {
    signature: Signature,
}

impl ScalarUDFImpl for ExpandIndex {
    fn name(&self) -> &str {
        "mv_expand_index"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let lists = args.args.iter().map(|arg| arg.to_array(args.number_rows)).collect::<Result<Vec<ArrayRef>>>()?;
        if lists.iter().any(|list| !matches!(list.data_type(), DataType::List(_))) {
            return exec_err!("mv_expand_index expects lists");
        }
        let mut builder = ListBuilder::new(Int64Builder::new());
        for row in 0..args.number_rows {
            let longest = lists.iter().map(|list| list.as_list::<i32>().value_length(row)).max().unwrap_or(0);
            (0..i64::from(longest)).for_each(|idx| builder.values().append_value(idx));
            builder.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(builder.finish())))
    }
}
