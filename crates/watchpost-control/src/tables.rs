//! Table management: creating custom tables with declared schemas, adding
//! columns, setting retention, and describing tables in Azure's table JSON.

use serde_json::{json, Value as Json};
use watchpost_schema::standard::standard_table;
use watchpost_schema::{ColumnDef, KqlType, TableSchema, TIME_GENERATED, TIME_RECEIVED};
use watchpost_storage::TableInfo;

use crate::{require_write, Access, Control, ControlError, ControlResult};

/// Longest retention a table may have, in days (twelve years, Azure's
/// longest total retention).
pub const MAX_RETENTION_DAYS: u32 = 4383;

/// Columns every custom table has besides its own: what the ingestion paths
/// stamp on each row (`TimeGenerated` is required of the caller).
const STANDARD_CUSTOM_COLUMNS: [(&str, KqlType); 5] = [
    ("TenantId", KqlType::String),
    ("SourceSystem", KqlType::String),
    ("Type", KqlType::String),
    ("_ResourceId", KqlType::String),
    (TIME_RECEIVED, KqlType::Datetime),
];

/// A table change, as requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    /// Columns to have (added when missing; existing ones keep their type).
    pub columns: Vec<ColumnDef>,
    pub retention_days: Option<u32>,
}

impl TableSpec {
    /// Reads Azure's table JSON:
    /// `{"properties": {"schema": {"name": "T_CL", "columns": [{"name": "...",
    /// "type": "string"}]}, "retentionInDays": 30}}`. Column types are
    /// Azure's (`string`, `int`, `long`, `real`, `boolean`, `dateTime`,
    /// `guid`, `dynamic`) or KQL's.
    pub fn from_json(name: &str, body: &Json) -> ControlResult<TableSpec> {
        let invalid = |message: &str| ControlError::InvalidInput(message.to_string());
        let Some(properties) = body.get("properties").and_then(Json::as_object) else {
            return Err(invalid("the request body needs a `properties` object"));
        };
        let retention_days = match properties.get("retentionInDays") {
            None | Some(Json::Null) => None,
            Some(value) => {
                let days = value.as_u64().and_then(|days| u32::try_from(days).ok());
                match days {
                    Some(days) if (1..=MAX_RETENTION_DAYS).contains(&days) => Some(days),
                    _ => {
                        let message =
                            format!("`retentionInDays` must be a whole number from 1 to {MAX_RETENTION_DAYS}");
                        return Err(ControlError::InvalidInput(message));
                    }
                }
            }
        };
        let schema = properties.get("schema");
        if let Some(schema_name) = schema.and_then(|schema| schema.get("name")).and_then(Json::as_str) {
            if schema_name != name {
                let message = format!("the schema names table `{schema_name}` but the path names `{name}`");
                return Err(ControlError::InvalidInput(message));
            }
        }
        let mut columns = Vec::new();
        let listed = schema.and_then(|schema| schema.get("columns"));
        match listed {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) => {
                for item in items {
                    columns.push(column_from_json(item)?);
                }
            }
            Some(_) => return Err(invalid("`schema.columns` must be a list")),
        }
        let spec = TableSpec { name: name.to_string(), columns, retention_days };
        spec.check_columns()?;
        Ok(spec)
    }

    /// Column names are identifiers and appear once.
    pub fn check_columns(&self) -> ControlResult<()> {
        for (idx, column) in self.columns.iter().enumerate() {
            if !crate::is_identifier(&column.name) {
                return Err(ControlError::InvalidInput(format!("`{}` is not a valid column name", column.name)));
            }
            if self.columns[..idx].iter().any(|seen| seen.name == column.name) {
                return Err(ControlError::InvalidInput(format!("column `{}` is listed twice", column.name)));
            }
        }
        Ok(())
    }
}

fn column_from_json(item: &Json) -> ControlResult<ColumnDef> {
    let name = item.get("name").and_then(Json::as_str);
    let type_name = item.get("type").and_then(Json::as_str);
    let (Some(name), Some(type_name)) = (name, type_name) else {
        return Err(ControlError::InvalidInput("each column needs a `name` and a `type`".to_string()));
    };
    let Some(kql_type) = KqlType::from_name(type_name) else {
        return Err(ControlError::InvalidInput(format!("column `{name}` has an unknown type `{type_name}`")));
    };
    Ok(ColumnDef::new(name, kql_type))
}

/// Azure's name for a column type in table JSON.
fn azure_type_name(kql_type: KqlType) -> &'static str {
    match kql_type {
        KqlType::Bool => "boolean",
        KqlType::Datetime => "dateTime",
        other => other.name(),
    }
}

/// Azure's table JSON for a table.
pub fn table_json(info: &TableInfo) -> Json {
    let columns: Vec<Json> = info
        .schema
        .columns
        .iter()
        .map(|column| json!({"name": column.name, "type": azure_type_name(column.kql_type)}))
        .collect();
    json!({
        "name": info.name,
        "properties": {
            "retentionInDays": info.retention_days,
            "schemaMode": if info.declared { "declared" } else { "extensible" },
            "schema": {
                "name": info.name,
                "tableType": if info.standard { "Microsoft" } else { "CustomLog" },
                "columns": columns,
            },
        },
    })
}

/// Whether `name` may be a new custom table: an identifier ending in `_CL`,
/// at most 63 characters before the suffix, as in Azure.
fn is_custom_table_name(name: &str) -> bool {
    name.strip_suffix("_CL").is_some_and(|stem| !stem.is_empty() && stem.len() <= 63) && crate::is_identifier(name)
}

impl Control {
    /// Creates a table or changes one (adds columns, sets retention).
    /// Standard tables keep their schema: only their retention changes.
    pub fn put_table(&self, workspace: &str, spec: TableSpec, access: Access) -> ControlResult<TableInfo> {
        require_write(access, "change its tables")?;
        spec.check_columns()?;
        let existing = self.store.table_info(workspace, &spec.name);
        if let Some(standard) = standard_table(&spec.name) {
            if let Some(extra) = spec.columns.iter().find(|column| standard.schema.column(&column.name).is_none()) {
                let message = format!(
                    "`{}` is a standard table with a fixed schema; it has no column `{}`",
                    spec.name, extra.name
                );
                return Err(ControlError::InvalidInput(message));
            }
        } else if existing.is_none() {
            if !is_custom_table_name(&spec.name) {
                let message = format!(
                    "`{}` is not a valid custom table name: use letters, digits and `_`, ending in `_CL`",
                    spec.name
                );
                return Err(ControlError::InvalidInput(message));
            }
            if self.metastore.function(workspace, &spec.name).is_some() {
                return Err(ControlError::Conflict(format!("`{}` is the name of a function", spec.name)));
            }
            let time = spec.columns.iter().find(|column| column.name == TIME_GENERATED);
            if time.map(|column| column.kql_type) != Some(KqlType::Datetime) {
                let message = format!("a new table needs a `{TIME_GENERATED}` column of type datetime");
                return Err(ControlError::InvalidInput(message));
            }
        }
        let mut columns = spec.columns;
        if existing.is_none() && standard_table(&spec.name).is_none() {
            for (name, kql_type) in STANDARD_CUSTOM_COLUMNS {
                if !columns.iter().any(|column| column.name == name) {
                    columns.push(ColumnDef::new(name, kql_type));
                }
            }
        }
        let info = self.store.declare_table(workspace, &spec.name, &TableSchema::new(columns), spec.retention_days)?;
        Ok(info)
    }

    /// One table of the workspace.
    pub fn table(&self, workspace: &str, name: &str) -> ControlResult<TableInfo> {
        self.store
            .table_info(workspace, name)
            .ok_or_else(|| ControlError::NotFound(format!("table `{name}` does not exist")))
    }

    /// Every table of the workspace (the standard tables included).
    pub fn tables(&self, workspace: &str) -> Vec<TableInfo> {
        self.store.tables(workspace).iter().filter_map(|name| self.store.table_info(workspace, name)).collect()
    }
}
