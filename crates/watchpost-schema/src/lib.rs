//! KQL scalar types, column and table definitions, and their Arrow mapping.
//!
//! Everything that needs to agree on what a column *is* (ingest writing it,
//! storage persisting it, the binder typing it, the engine reading it and the
//! query API naming it) goes through [`KqlType`] and [`TableSchema`]. The
//! Arrow mapping is fixed here: a KQL type that Arrow has no native type for
//! (`guid`, `dynamic`) is stored as UTF-8 text and keeps its KQL type in the
//! field metadata under [`KQL_TYPE_METADATA_KEY`].

pub mod cef;
pub mod standard;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

/// Field metadata key that carries the KQL type of an Arrow column.
pub const KQL_TYPE_METADATA_KEY: &str = "kql.type";

/// Name of the column holding each row's event time.
pub const TIME_GENERATED: &str = "TimeGenerated";
/// Name of the hidden column holding when Watchpost received the row; KQL's
/// `ingestion_time()` reads it.
pub const TIME_RECEIVED: &str = "_TimeReceived";

/// The scalar types of KQL, as the query API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KqlType {
    Bool,
    Datetime,
    Dynamic,
    Guid,
    Int,
    Long,
    Real,
    String,
    Timespan,
    Decimal,
}

impl KqlType {
    /// The .NET type name Kusto reports for the type (`getschema`'s
    /// `DataType` column).
    pub fn dotnet_name(self) -> &'static str {
        match self {
            KqlType::Bool => "System.SByte",
            KqlType::Int => "System.Int32",
            KqlType::Long => "System.Int64",
            KqlType::Real => "System.Double",
            KqlType::Decimal => "System.Data.SqlTypes.SqlDecimal",
            KqlType::String => "System.String",
            KqlType::Datetime => "System.DateTime",
            KqlType::Timespan => "System.TimeSpan",
            KqlType::Guid => "System.Guid",
            KqlType::Dynamic => "System.Object",
        }
    }

    /// The type name the query API puts in `columns[].type`.
    pub fn name(self) -> &'static str {
        match self {
            KqlType::Bool => "bool",
            KqlType::Datetime => "datetime",
            KqlType::Dynamic => "dynamic",
            KqlType::Guid => "guid",
            KqlType::Int => "int",
            KqlType::Long => "long",
            KqlType::Real => "real",
            KqlType::String => "string",
            KqlType::Timespan => "timespan",
            KqlType::Decimal => "decimal",
        }
    }

    /// The types a stream declaration (a DCR's `streamDeclarations`, spec
    /// 2.4; a pipeline `kql` step's `columns`) may give a column, by the
    /// names it spells them with.
    pub const STREAM_TYPES: [(&'static str, KqlType); 7] = [
        ("string", KqlType::String),
        ("int", KqlType::Int),
        ("long", KqlType::Long),
        ("real", KqlType::Real),
        ("boolean", KqlType::Bool),
        ("dynamic", KqlType::Dynamic),
        ("datetime", KqlType::Datetime),
    ];

    /// A stream declaration's type name (any case), if it is one of
    /// [`KqlType::STREAM_TYPES`].
    pub fn from_stream_name(name: &str) -> Option<KqlType> {
        KqlType::STREAM_TYPES.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map(|(_, kql_type)| *kql_type)
    }

    /// The name a stream declaration spells this type with (`boolean` for
    /// bool); the query name for types streams do not have.
    pub fn stream_name(self) -> &'static str {
        KqlType::STREAM_TYPES.iter().find(|(_, kql_type)| *kql_type == self).map_or(self.name(), |(name, _)| name)
    }

    /// The list of stream type names, for error messages.
    pub fn stream_names() -> String {
        KqlType::STREAM_TYPES.map(|(name, _)| name).join(", ")
    }

    /// Parses a KQL type name, including the synonyms KQL accepts.
    pub fn from_name(name: &str) -> Option<KqlType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "bool" | "boolean" => KqlType::Bool,
            "datetime" | "date" => KqlType::Datetime,
            "dynamic" => KqlType::Dynamic,
            "guid" | "uuid" | "uniqueid" => KqlType::Guid,
            "int" | "int32" => KqlType::Int,
            "long" | "int64" => KqlType::Long,
            "real" | "double" => KqlType::Real,
            "string" => KqlType::String,
            "timespan" | "time" => KqlType::Timespan,
            "decimal" => KqlType::Decimal,
            _ => return None,
        })
    }

    /// The Arrow type a column of this KQL type is stored as.
    ///
    /// Datetimes are UTC nanoseconds and timespans nanosecond durations,
    /// so KQL's 100 ns ticks survive; the price is the range of an `i64` of
    /// nanoseconds (years 1677 to 2262), which covers real log data.
    pub fn arrow_type(self) -> DataType {
        match self {
            KqlType::Bool => DataType::Boolean,
            KqlType::Datetime => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            KqlType::Dynamic | KqlType::Guid | KqlType::String => DataType::Utf8,
            KqlType::Int => DataType::Int32,
            KqlType::Long => DataType::Int64,
            KqlType::Real => DataType::Float64,
            KqlType::Timespan => DataType::Duration(TimeUnit::Nanosecond),
            KqlType::Decimal => DataType::Decimal128(38, 18),
        }
    }

    /// Infers the KQL type of an Arrow field: the metadata tag wins, then the
    /// Arrow type decides. Returns `None` for Arrow types KQL has no name for.
    pub fn of_field(field: &Field) -> Option<KqlType> {
        if let Some(tag) = field.metadata().get(KQL_TYPE_METADATA_KEY) {
            if let Some(kql_type) = KqlType::from_name(tag) {
                return Some(kql_type);
            }
        }
        KqlType::of_arrow(field.data_type())
    }

    /// Maps an Arrow type to the KQL type that reads it.
    pub fn of_arrow(data_type: &DataType) -> Option<KqlType> {
        Some(match data_type {
            DataType::Boolean => KqlType::Bool,
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => KqlType::Datetime,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => KqlType::String,
            DataType::Int8 | DataType::Int16 | DataType::Int32 => KqlType::Int,
            DataType::UInt8 | DataType::UInt16 => KqlType::Int,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => KqlType::Long,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => KqlType::Real,
            DataType::Duration(_) | DataType::Interval(_) => KqlType::Timespan,
            DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => KqlType::Decimal,
            DataType::Null => KqlType::String,
            _ => return None,
        })
    }
}

impl fmt::Display for KqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kql_type: KqlType,
}

impl ColumnDef {
    pub fn new(name: impl Into<String>, kql_type: KqlType) -> ColumnDef {
        ColumnDef { name: name.into(), kql_type }
    }

    /// The nullable Arrow field for this column, tagged with its KQL type.
    pub fn arrow_field(&self) -> Field {
        let metadata = HashMap::from([(KQL_TYPE_METADATA_KEY.to_string(), self.kql_type.name().to_string())]);
        Field::new(&self.name, self.kql_type.arrow_type(), true).with_metadata(metadata)
    }
}

/// The ordered columns of a table. Column names are unique and compared
/// case-sensitively, as in KQL.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableSchema {
    pub columns: Vec<ColumnDef>,
}

impl TableSchema {
    pub fn new(columns: Vec<ColumnDef>) -> TableSchema {
        TableSchema { columns }
    }

    /// Returns the column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// Returns the position of the column called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column.name == name)
    }

    /// Appends the columns of `other` that this schema lacks, in their order.
    /// Returns whether anything was added.
    pub fn merge(&mut self, other: &TableSchema) -> bool {
        let mut changed = false;
        for column in &other.columns {
            if self.column(&column.name).is_none() {
                self.columns.push(column.clone());
                changed = true;
            }
        }
        changed
    }

    /// The Arrow schema of this table.
    pub fn arrow_schema(&self) -> Arc<Schema> {
        Arc::new(Schema::new(self.columns.iter().map(ColumnDef::arrow_field).collect::<Vec<_>>()))
    }

    /// Reads a table schema back from an Arrow schema.
    pub fn from_arrow(schema: &Schema) -> TableSchema {
        let columns = schema
            .fields()
            .iter()
            .map(|field| ColumnDef::new(field.name(), KqlType::of_field(field).unwrap_or(KqlType::String)))
            .collect();
        TableSchema { columns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_round_trip_keeps_kql_types() {
        let schema = TableSchema::new(vec![
            ColumnDef::new("TimeGenerated", KqlType::Datetime),
            ColumnDef::new("Id_g", KqlType::Guid),
            ColumnDef::new("Bag", KqlType::Dynamic),
            ColumnDef::new("N", KqlType::Long),
        ]);
        assert_eq!(TableSchema::from_arrow(&schema.arrow_schema()), schema);
    }

    #[test]
    fn merge_appends_missing_columns_only() {
        let mut schema = TableSchema::new(vec![ColumnDef::new("a_s", KqlType::String)]);
        let other =
            TableSchema::new(vec![ColumnDef::new("b_d", KqlType::Real), ColumnDef::new("a_s", KqlType::String)]);
        assert!(schema.merge(&other));
        assert!(!schema.merge(&other));
        let names: Vec<_> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a_s", "b_d"]);
    }
}
