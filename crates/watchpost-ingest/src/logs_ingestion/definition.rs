//! A data collection rule in Azure's JSON shape (spec 2.4), parsed and
//! checked.

use std::collections::HashSet;

use serde_json::Value;
use watchpost_schema::{ColumnDef, KqlType};

use super::LogsIngestionError;

/// One declared input stream: a name (`Custom-...`) and ordered columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDeclaration {
    pub name: String,
    pub columns: Vec<ColumnDef>,
}

/// A `logAnalytics` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
    /// The workspace the destination names; `None` means the rule's own.
    pub workspace_id: Option<String>,
}

/// One data flow: input streams to destinations, through an optional
/// transform, into the table of `output_stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFlow {
    pub streams: Vec<String>,
    pub destinations: Vec<String>,
    pub transform_kql: Option<String>,
    pub output_stream: String,
    /// The table `output_stream` names: `X_CL` for `Custom-X_CL`, `X` for `Microsoft-X`.
    pub table: String,
}

/// The parts of a data collection rule Watchpost implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcrDefinition {
    pub streams: Vec<StreamDeclaration>,
    pub destinations: Vec<Destination>,
    pub flows: Vec<DataFlow>,
}

impl DcrDefinition {
    /// Parses a rule: either the whole resource (`{"properties": {...}}`)
    /// or its `properties` object. Every problem is a 400
    /// `InvalidDataCollectionRule` naming the JSON path at fault.
    pub fn parse(document: &Value) -> Result<DcrDefinition, LogsIngestionError> {
        let properties = match document.get("properties") {
            Some(properties) => properties,
            None => document,
        };
        let Some(properties) = properties.as_object() else {
            return Err(LogsIngestionError::invalid_rule("the rule must be a JSON object with `properties`"));
        };
        let streams = parse_streams(properties.get("streamDeclarations"))?;
        let destinations = parse_destinations(properties.get("destinations"))?;
        let flows = parse_flows(properties.get("dataFlows"), &streams, &destinations)?;
        Ok(DcrDefinition { streams, destinations, flows })
    }

    /// The declaration of `name` (compared case-insensitively).
    pub fn stream(&self, name: &str) -> Option<&StreamDeclaration> {
        self.streams.iter().find(|stream| stream.name.eq_ignore_ascii_case(name))
    }

    /// The flows fed by stream `name`.
    pub fn flows_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (usize, &'a DataFlow)> + 'a {
        self.flows
            .iter()
            .enumerate()
            .filter(move |(_, flow)| flow.streams.iter().any(|stream| stream.eq_ignore_ascii_case(name)))
    }

    /// The destination called `name`.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|destination| destination.name == name)
    }
}

fn parse_streams(value: Option<&Value>) -> Result<Vec<StreamDeclaration>, LogsIngestionError> {
    let Some(map) = value.and_then(Value::as_object) else {
        return Err(LogsIngestionError::invalid_rule("`properties.streamDeclarations` must be an object"));
    };
    let mut streams = Vec::new();
    for (name, declaration) in map {
        let path = format!("properties.streamDeclarations['{name}']");
        if !name.starts_with("Custom-") || name.len() <= "Custom-".len() {
            return Err(LogsIngestionError::invalid_rule(format!(
                "{path}: a declared stream name must start with `Custom-`"
            )));
        }
        let Some(columns) = declaration.get("columns").and_then(Value::as_array) else {
            return Err(LogsIngestionError::invalid_rule(format!("{path}.columns must be an array")));
        };
        if columns.is_empty() {
            return Err(LogsIngestionError::invalid_rule(format!("{path}.columns must declare at least one column")));
        }
        let mut seen = HashSet::new();
        let mut defs = Vec::new();
        for (idx, column) in columns.iter().enumerate() {
            let at = format!("{path}.columns[{idx}]");
            let column_name = column.get("name").and_then(Value::as_str).unwrap_or("");
            if !valid_column_name(column_name) {
                return Err(LogsIngestionError::invalid_rule(format!(
                    "{at}.name `{column_name}` is not valid: start with a letter or `_`, then letters, digits or `_`"
                )));
            }
            if !seen.insert(column_name.to_ascii_lowercase()) {
                return Err(LogsIngestionError::invalid_rule(format!(
                    "{at}: column `{column_name}` is declared twice"
                )));
            }
            let type_name = column.get("type").and_then(Value::as_str).unwrap_or("");
            let kql_type = KqlType::from_stream_name(type_name).ok_or_else(|| {
                LogsIngestionError::invalid_rule(format!(
                    "{at}.type `{type_name}` is not a stream column type; use one of {}",
                    KqlType::stream_names()
                ))
            })?;
            defs.push(ColumnDef::new(column_name, kql_type));
        }
        streams.push(StreamDeclaration { name: name.clone(), columns: defs });
    }
    Ok(streams)
}

fn valid_column_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

fn parse_destinations(value: Option<&Value>) -> Result<Vec<Destination>, LogsIngestionError> {
    let Some(entries) = value.and_then(|value| value.get("logAnalytics")).and_then(Value::as_array) else {
        return Err(LogsIngestionError::invalid_rule("`properties.destinations.logAnalytics` must be an array"));
    };
    let mut destinations = Vec::new();
    for (idx, entry) in entries.iter().enumerate() {
        let at = format!("properties.destinations.logAnalytics[{idx}]");
        let Some(name) = entry.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()) else {
            return Err(LogsIngestionError::invalid_rule(format!("{at}.name is required")));
        };
        if destinations.iter().any(|destination: &Destination| destination.name == name) {
            return Err(LogsIngestionError::invalid_rule(format!("{at}: destination `{name}` is declared twice")));
        }
        let workspace_id = match entry.get("workspaceId") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.trim().to_ascii_lowercase()),
            Some(_) => return Err(LogsIngestionError::invalid_rule(format!("{at}.workspaceId must be a string"))),
        };
        destinations.push(Destination { name: name.to_string(), workspace_id });
    }
    Ok(destinations)
}

fn parse_flows(
    value: Option<&Value>,
    streams: &[StreamDeclaration],
    destinations: &[Destination],
) -> Result<Vec<DataFlow>, LogsIngestionError> {
    let Some(entries) = value.and_then(Value::as_array).filter(|entries| !entries.is_empty()) else {
        return Err(LogsIngestionError::invalid_rule("`properties.dataFlows` must be a non-empty array"));
    };
    let mut flows = Vec::new();
    for (idx, entry) in entries.iter().enumerate() {
        let at = format!("properties.dataFlows[{idx}]");
        let flow_streams = string_list(entry.get("streams"), &format!("{at}.streams"))?;
        for stream in &flow_streams {
            if !streams.iter().any(|declared| declared.name.eq_ignore_ascii_case(stream)) {
                let message = if stream.starts_with("Microsoft-") {
                    format!(
                        "{at}.streams: `{stream}` is a built-in stream; only declared `Custom-` streams can be sent to"
                    )
                } else {
                    format!("{at}.streams: `{stream}` is not declared in streamDeclarations")
                };
                return Err(LogsIngestionError::invalid_rule(message));
            }
        }
        let flow_destinations = string_list(entry.get("destinations"), &format!("{at}.destinations"))?;
        for destination in &flow_destinations {
            if !destinations.iter().any(|declared| &declared.name == destination) {
                return Err(LogsIngestionError::invalid_rule(format!(
                    "{at}.destinations: `{destination}` is not declared in destinations.logAnalytics"
                )));
            }
        }
        let transform_kql = match entry.get("transformKql") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.trim().is_empty() => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => return Err(LogsIngestionError::invalid_rule(format!("{at}.transformKql must be a string"))),
        };
        if transform_kql.is_some() && flow_streams.len() != 1 {
            return Err(LogsIngestionError::invalid_rule(format!(
                "{at}: a flow with transformKql must have exactly one input stream"
            )));
        }
        let output_stream = match entry.get("outputStream").and_then(Value::as_str) {
            Some(output) => output.to_string(),
            None if flow_streams.len() == 1 => flow_streams[0].clone(),
            None => {
                return Err(LogsIngestionError::invalid_rule(format!(
                    "{at}.outputStream is required when a flow has several streams"
                )))
            }
        };
        let table = output_table(&output_stream).ok_or_else(|| {
            LogsIngestionError::invalid_rule(format!(
                "{at}.outputStream `{output_stream}` must be `Custom-<Table>_CL` (a custom table) or `Microsoft-<Table>` (a built-in table)"
            ))
        })?;
        flows.push(DataFlow {
            streams: flow_streams,
            destinations: flow_destinations,
            transform_kql,
            output_stream,
            table,
        });
    }
    Ok(flows)
}

/// The table an output stream names.
fn output_table(output_stream: &str) -> Option<String> {
    let valid = |table: &str| {
        let mut chars = table.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && table.len() <= 100
    };
    if let Some(table) = output_stream.strip_prefix("Custom-") {
        return (table.ends_with("_CL") && valid(table)).then(|| table.to_string());
    }
    let table = output_stream.strip_prefix("Microsoft-")?;
    valid(table).then(|| table.to_string())
}

fn string_list(value: Option<&Value>, at: &str) -> Result<Vec<String>, LogsIngestionError> {
    let items = value.and_then(Value::as_array).filter(|items| !items.is_empty());
    let Some(items) = items else {
        return Err(LogsIngestionError::invalid_rule(format!("{at} must be a non-empty array of strings")));
    };
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| LogsIngestionError::invalid_rule(format!("{at} must hold strings only")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(flows: Value) -> Value {
        json!({"properties": {
            "streamDeclarations": {"Custom-Raw": {"columns": [
                {"name": "TimeGenerated", "type": "datetime"}, {"name": "RawData", "type": "string"}]}},
            "destinations": {"logAnalytics": [{"name": "la", "workspaceId": "W"}]},
            "dataFlows": flows,
        }})
    }

    #[test]
    fn parses_streams_flows_and_output_tables() {
        let flows = json!([
            {"streams": ["Custom-Raw"], "destinations": ["la"], "transformKql": "source | extend X = 1", "outputStream": "Custom-Parsed_CL"},
            {"streams": ["Custom-Raw"], "destinations": ["la"], "outputStream": "Microsoft-Syslog"},
        ]);
        let dcr = DcrDefinition::parse(&rule(flows)).unwrap();
        assert_eq!(dcr.streams[0].columns[1], ColumnDef::new("RawData", KqlType::String));
        assert_eq!(dcr.flows[0].table, "Parsed_CL");
        assert_eq!(dcr.flows[0].transform_kql.as_deref(), Some("source | extend X = 1"));
        assert_eq!(dcr.flows[1].table, "Syslog");
        assert_eq!(dcr.destinations[0].workspace_id.as_deref(), Some("w"));
        assert_eq!(dcr.flows_of("custom-raw").count(), 2);
    }

    #[test]
    fn names_the_json_path_at_fault() {
        let cases = [
            (
                json!([{"streams": ["Custom-Nope"], "destinations": ["la"], "outputStream": "Custom-T_CL"}]),
                "dataFlows[0].streams: `Custom-Nope` is not declared",
            ),
            (
                json!([{"streams": ["Custom-Raw"], "destinations": ["x"], "outputStream": "Custom-T_CL"}]),
                "`x` is not declared in destinations",
            ),
            (
                json!([{"streams": ["Custom-Raw"], "destinations": ["la"], "outputStream": "Custom-T"}]),
                "must be `Custom-<Table>_CL`",
            ),
            (json!([]), "dataFlows` must be a non-empty array"),
        ];
        for (flows, expected) in cases {
            let err = DcrDefinition::parse(&rule(flows)).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(expected), "{} does not contain {expected}", err.message);
        }
        let bad_type = json!({"streamDeclarations": {"Custom-A": {"columns": [{"name": "x", "type": "guid"}]}},
            "destinations": {"logAnalytics": [{"name": "la"}]},
            "dataFlows": [{"streams": ["Custom-A"], "destinations": ["la"], "outputStream": "Custom-A_CL"}]});
        let err = DcrDefinition::parse(&bad_type).unwrap_err();
        assert!(err.message.contains("columns[0].type `guid`"), "{}", err.message);
        let bad_stream = json!({"streamDeclarations": {"Raw": {"columns": [{"name": "x", "type": "string"}]}}});
        assert!(DcrDefinition::parse(&bad_stream).unwrap_err().message.contains("must start with `Custom-`"));
    }
}
