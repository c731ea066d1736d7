//! Binding never panics, whatever the parser made of the input, against a
//! catalog with a column of every KQL type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watchpost_kql_binder::{bind, TableCatalog};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

struct Catalog;

impl TableCatalog for Catalog {
    fn table(&self, name: &str) -> Option<TableSchema> {
        let columns = match name {
            "T" | "SecurityEvent" => vec![
                ColumnDef::new("TimeGenerated", KqlType::Datetime),
                ColumnDef::new("Computer", KqlType::String),
                ColumnDef::new("EventID", KqlType::Int),
                ColumnDef::new("Count", KqlType::Long),
                ColumnDef::new("Score", KqlType::Real),
                ColumnDef::new("Flag", KqlType::Bool),
                ColumnDef::new("Props", KqlType::Dynamic),
                ColumnDef::new("Duration", KqlType::Timespan),
                ColumnDef::new("Id", KqlType::Guid),
                ColumnDef::new("Amount", KqlType::Decimal),
            ],
            "Events_CL" => vec![
                ColumnDef::new("TimeGenerated", KqlType::Datetime),
                ColumnDef::new("Message_s", KqlType::String),
                ColumnDef::new("Value_d", KqlType::Real),
            ],
            _ => return None,
        };
        Some(TableSchema::new(columns))
    }

    fn table_names(&self) -> Vec<String> {
        vec!["T".into(), "SecurityEvent".into(), "Events_CL".into()]
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (query, _) = watchpost_kql_syntax::parse(text);
    let _ = bind(&query, &Catalog);
});
