//! `watchpost query`: sends KQL to a query API and prints the primary
//! result as an aligned table, JSON or CSV.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{json, Value as Json};

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Workspace id.
    #[arg(long)]
    workspace: String,
    /// A shared key or query key of the workspace (sent as a bearer token).
    #[arg(long, env = "WATCHPOST_KEY")]
    key: String,
    /// ISO 8601 duration or interval limiting TimeGenerated, e.g. PT1H.
    #[arg(long)]
    timespan: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
    /// The KQL query.
    query: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Json,
    Csv,
}

pub(crate) fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/v1/workspaces/{}/query", args.url.trim_end_matches('/'), args.workspace);
    let body = json!({"query": args.query, "timespan": args.timespan});
    let response = ureq::post(&url)
        .set("Authorization", &format!("Bearer {}", args.key))
        .set("Content-Type", "application/json")
        .send_json(body);
    let (status, payload): (u16, Json) = match response {
        Ok(response) => (response.status(), response.into_json().context("reading the response")?),
        Err(ureq::Error::Status(status, response)) => (status, response.into_json().unwrap_or(Json::Null)),
        Err(err) => return Err(err).with_context(|| format!("sending the query to {url}")),
    };
    if status != 200 {
        eprintln!("query failed ({status}): {}", describe_error(&payload));
        return Ok(ExitCode::from(1));
    }
    let table = &payload["tables"][0];
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(table)?),
        OutputFormat::Csv => print!("{}", render_csv(table)),
        OutputFormat::Table => print!("{}", render_table(table)),
    }
    if payload.get("error").is_some() {
        eprintln!("warning: {}", describe_error(&payload));
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_error(payload: &Json) -> String {
    let error = &payload["error"];
    let inner = &error["innererror"];
    match (inner["line"].as_u64(), inner["pos"].as_u64(), inner["message"].as_str()) {
        (Some(line), Some(pos), Some(message)) => format!("{line}:{pos}: {message}"),
        _ => {
            let message = inner["message"].as_str().or(error["message"].as_str()).unwrap_or("unknown error");
            message.to_string()
        }
    }
}

fn cell_text(cell: &Json) -> String {
    match cell {
        Json::Null => String::new(),
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn columns_and_rows(table: &Json) -> (Vec<String>, Vec<Vec<String>>) {
    let columns = table["columns"]
        .as_array()
        .map(|columns| columns.iter().map(|c| c["name"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default();
    let rows = table["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| row.as_array().map(|cells| cells.iter().map(cell_text).collect()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    (columns, rows)
}

/// Renders a result table with columns padded to their widest cell.
pub(crate) fn render_table(table: &Json) -> String {
    let (columns, rows) = columns_and_rows(table);
    let mut widths: Vec<usize> = columns.iter().map(|name| name.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&columns);
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    out.push_str(&line(&rule));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// Renders a result table as RFC 4180 CSV.
pub(crate) fn render_csv(table: &Json) -> String {
    let (columns, rows) = columns_and_rows(table);
    let escape = |cell: &String| {
        if cell.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", cell.replace('"', "\"\""))
        } else {
            cell.clone()
        }
    };
    let mut out = String::new();
    for row in std::iter::once(&columns).chain(&rows) {
        out.push_str(&row.iter().map(escape).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Json {
        json!({"columns": [{"name": "Name", "type": "string"}, {"name": "count_", "type": "long"}],
               "rows": [["alpha", 10], ["b,c", null]]})
    }

    #[test]
    fn table_is_aligned() {
        assert_eq!(render_table(&sample()), "Name   count_\n-----  ------\nalpha  10\nb,c\n");
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(render_csv(&sample()), "Name,count_\r\nalpha,10\r\n\"b,c\",\r\n");
    }
}
