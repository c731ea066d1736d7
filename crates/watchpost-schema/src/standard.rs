//! The standard table catalogue: the schemas of the Azure Monitor and
//! Microsoft Sentinel tables that content refers to most, so that a query
//! over `SigninLogs` binds (and returns no rows) on a fresh workspace, and
//! so that connectors write rows of exactly those shapes.
//!
//! The schemas are data, one JSON file per table in `tables/` next to this
//! crate's `Cargo.toml`, with the column names and KQL types of Microsoft's
//! public table references (the `reference` field says which page). They
//! are compiled in with `include_str!`; a test checks that every file in
//! the folder is listed here, parses, has its time column and no duplicate
//! column.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::{ColumnDef, KqlType, TableSchema, TIME_RECEIVED};

/// One table of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardTable {
    pub name: String,
    /// The column holding each row's event time (`TimeGenerated`).
    pub time_column: String,
    /// The public reference page the columns come from.
    pub reference: String,
    /// The documented columns, then Watchpost's hidden `_TimeReceived`
    /// (what `ingestion_time()` reads).
    pub schema: TableSchema,
}

/// The shape of a file in `tables/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StandardTableFile {
    pub name: String,
    pub time_column: String,
    pub reference: String,
    #[serde(default)]
    pub note: Option<String>,
    pub columns: Vec<StandardColumn>,
}

/// One column of a file in `tables/`; `type` is a KQL type name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

macro_rules! table {
    ($name:literal) => {
        ($name, include_str!(concat!("../tables/", $name, ".json")))
    };
}

/// Every file of `tables/`, by table name.
pub const TABLE_FILES: &[(&str, &str)] = &[
    table!("AADNonInteractiveUserSignInLogs"),
    table!("ASimAuditEventLogs"),
    table!("ASimAuthenticationEventLogs"),
    table!("ASimDnsActivityLogs"),
    table!("ASimFileEventLogs"),
    table!("ASimNetworkSessionLogs"),
    table!("ASimProcessEventLogs"),
    table!("ASimRegistryEventLogs"),
    table!("ASimWebSessionLogs"),
    table!("AWSCloudTrail"),
    table!("AuditLogs"),
    table!("AzureActivity"),
    table!("CommonSecurityLog"),
    table!("DnsEvents"),
    table!("Event"),
    table!("Heartbeat"),
    table!("OfficeActivity"),
    table!("SecurityAlert"),
    table!("SecurityEvent"),
    table!("SecurityIncident"),
    table!("SigninLogs"),
    table!("Syslog"),
    table!("ThreatIntelligenceIndicator"),
    table!("W3CIISLog"),
    table!("WindowsEvent"),
];

/// Reads one file of `tables/` into a table, or says what is wrong with it.
pub fn parse_table_file(text: &str) -> Result<StandardTable, String> {
    let file: StandardTableFile = serde_json::from_str(text).map_err(|err| format!("not a table file: {err}"))?;
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(file.columns.len() + 1);
    for column in &file.columns {
        let Some(kql_type) = KqlType::from_name(&column.type_name) else {
            return Err(format!("column `{}` has an unknown type `{}`", column.name, column.type_name));
        };
        if columns.iter().any(|seen| seen.name == column.name) {
            return Err(format!("column `{}` is listed twice", column.name));
        }
        columns.push(ColumnDef::new(&column.name, kql_type));
    }
    let time = columns.iter().find(|column| column.name == file.time_column);
    if time.map(|column| column.kql_type) != Some(KqlType::Datetime) {
        return Err(format!("the time column `{}` is not a datetime column of the table", file.time_column));
    }
    if columns.iter().all(|column| column.name != TIME_RECEIVED) {
        columns.push(ColumnDef::new(TIME_RECEIVED, KqlType::Datetime));
    }
    Ok(StandardTable {
        name: file.name,
        time_column: file.time_column,
        reference: file.reference,
        schema: TableSchema::new(columns),
    })
}

/// Every standard table, in name order.
pub fn standard_tables() -> &'static [StandardTable] {
    static TABLES: OnceLock<Vec<StandardTable>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut tables: Vec<StandardTable> = TABLE_FILES
            .iter()
            .map(|(name, text)| {
                // The tests below parse every file, so a broken one never ships.
                parse_table_file(text).unwrap_or_else(|err| panic!("standard table file {name}.json: {err}"))
            })
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    })
}

/// The standard table called `name` (case-sensitive, as KQL names are).
pub fn standard_table(name: &str) -> Option<&'static StandardTable> {
    let tables = standard_tables();
    tables.binary_search_by(|table| table.name.as_str().cmp(name)).ok().map(|idx| &tables[idx])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_folder_is_listed_and_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tables");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = TABLE_FILES.iter().map(|(name, _)| format!("{name}.json")).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "tables/ and TABLE_FILES differ");
        for (name, text) in TABLE_FILES {
            let table = parse_table_file(text).unwrap_or_else(|err| panic!("{name}.json: {err}"));
            assert_eq!(&table.name, name, "{name}.json names another table");
            assert!(table.reference.starts_with("https://learn.microsoft.com/"), "{name}: reference");
            assert!(table.schema.columns.len() > 5, "{name}: too few columns");
        }
    }

    #[test]
    fn the_issue_lists_tables_are_all_present() {
        let wanted = [
            "Syslog",
            "CommonSecurityLog",
            "SecurityEvent",
            "WindowsEvent",
            "SigninLogs",
            "AADNonInteractiveUserSignInLogs",
            "AuditLogs",
            "AzureActivity",
            "OfficeActivity",
            "SecurityAlert",
            "SecurityIncident",
            "ThreatIntelligenceIndicator",
            "Heartbeat",
            "DnsEvents",
            "W3CIISLog",
            "AWSCloudTrail",
            "Event",
            "ASimAuthenticationEventLogs",
            "ASimDnsActivityLogs",
            "ASimNetworkSessionLogs",
            "ASimProcessEventLogs",
            "ASimWebSessionLogs",
            "ASimFileEventLogs",
            "ASimAuditEventLogs",
            "ASimRegistryEventLogs",
        ];
        for name in wanted {
            let table = standard_table(name).unwrap_or_else(|| panic!("{name} is missing"));
            assert_eq!(table.schema.column("TimeGenerated").unwrap().kql_type, KqlType::Datetime);
        }
        assert!(standard_table("syslog").is_none(), "names are case-sensitive");
        assert_eq!(standard_table("SecurityEvent").unwrap().schema.column("EventID").unwrap().kql_type, KqlType::Int);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let base = |columns: &str| {
            format!(
                r#"{{"name":"T","timeColumn":"TimeGenerated","reference":"https://learn.microsoft.com/x","columns":[{columns}]}}"#
            )
        };
        let dup = base(
            r#"{"name":"TimeGenerated","type":"datetime"},{"name":"A","type":"string"},{"name":"A","type":"long"}"#,
        );
        assert!(parse_table_file(&dup).unwrap_err().contains("listed twice"));
        let bad_type = base(r#"{"name":"TimeGenerated","type":"datetime"},{"name":"A","type":"text"}"#);
        assert!(parse_table_file(&bad_type).unwrap_err().contains("unknown type"));
        let no_time = base(r#"{"name":"A","type":"string"}"#);
        assert!(parse_table_file(&no_time).unwrap_err().contains("time column"));
    }
}
