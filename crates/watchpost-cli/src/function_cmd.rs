//! `watchpost function ...`: saved functions (parsers) of a workspace,
//! managed through a server's REST API, and the import of Sentinel parser
//! files (`FunctionName`/`FunctionAlias`/`FunctionQuery`/`FunctionParams`,
//! and ASIM's `ParserName`/`ParserQuery`/`ParserParams`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Workspace id.
    #[arg(long)]
    workspace: String,
    /// A shared key of the workspace (a query key can only list and show).
    #[arg(long, env = "WATCHPOST_KEY")]
    key: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FunctionCommand {
    /// Lists the workspace's saved functions.
    List(ServerArgs),
    /// Prints one saved function as JSON.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
    },
    /// Creates or replaces a saved function.
    Create(CreateArgs),
    /// Deletes a saved function.
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
    },
    /// Imports Sentinel parser YAML files (or folders of them) as saved
    /// functions, printing each file's outcome; exits 1 when any failed.
    Import {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The name queries call it by.
    name: String,
    /// The body (a KQL query or expression); `-` reads standard input.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// A file holding the body.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// The parameter list, e.g. "starttime:datetime=datetime(null), user:string='*'".
    #[arg(long, default_value = "")]
    parameters: String,
    #[arg(long, default_value = "")]
    category: String,
    #[arg(long, default_value = "")]
    display_name: String,
    #[arg(long, default_value = "")]
    description: String,
}

pub(crate) fn run(command: FunctionCommand) -> anyhow::Result<ExitCode> {
    match command {
        FunctionCommand::List(server) => {
            let (status, body) = server.send("GET", "", None)?;
            if status != 200 {
                return Ok(failed(status, &body));
            }
            for function in body["value"].as_array().into_iter().flatten() {
                let parameters = function["parameters"].as_str().unwrap_or("");
                println!("{}({parameters})", function["name"].as_str().unwrap_or(""));
            }
            Ok(ExitCode::SUCCESS)
        }
        FunctionCommand::Show { server, name } => {
            let (status, body) = server.send("GET", &name, None)?;
            if status != 200 {
                return Ok(failed(status, &body));
            }
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        }
        FunctionCommand::Create(args) => create(args),
        FunctionCommand::Delete { server, name } => {
            let (status, body) = server.send("DELETE", &name, None)?;
            if status != 200 {
                return Ok(failed(status, &body));
            }
            println!("deleted {name}");
            Ok(ExitCode::SUCCESS)
        }
        FunctionCommand::Import { server, paths } => import(&server, &paths),
    }
}

impl ServerArgs {
    /// Sends a request for function `name` (empty: the collection) and
    /// returns the status and the JSON body.
    fn send(&self, method: &str, name: &str, body: Option<Json>) -> anyhow::Result<(u16, Json)> {
        let mut url = format!("{}/v1/workspaces/{}/functions", self.url.trim_end_matches('/'), self.workspace);
        if !name.is_empty() {
            url.push('/');
            url.push_str(name);
        }
        let request = ureq::request(method, &url).set("Authorization", &format!("Bearer {}", self.key));
        let response = match body {
            Some(body) => request.set("Content-Type", "application/json").send_json(body),
            None => request.call(),
        };
        match response {
            Ok(response) => Ok((response.status(), response.into_json().unwrap_or(Json::Null))),
            Err(ureq::Error::Status(status, response)) => Ok((status, response.into_json().unwrap_or(Json::Null))),
            Err(err) => Err(err).with_context(|| format!("sending the request to {url}")),
        }
    }
}

fn failed(status: u16, body: &Json) -> ExitCode {
    eprintln!("failed ({status}): {}", error_message(body));
    ExitCode::from(1)
}

fn error_message(body: &Json) -> String {
    body["error"]["message"].as_str().unwrap_or("no error message").to_string()
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) if text == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading standard input")?;
            text
        }
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        (None, None) => anyhow::bail!("give the body with --body or --body-file"),
    };
    let request = json!({
        "body": body,
        "parameters": args.parameters,
        "category": args.category,
        "displayName": args.display_name,
        "description": args.description,
    });
    let (status, response) = args.server.send("PUT", &args.name, Some(request))?;
    match status {
        201 => println!("created {}", args.name),
        200 => println!("replaced {}", args.name),
        _ => return Ok(failed(status, &response)),
    }
    Ok(ExitCode::SUCCESS)
}

fn import(server: &ServerArgs, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for path in paths {
        collect_yaml(path, &mut files)?;
    }
    let (mut n_ok, mut n_failed) = (0, 0);
    for file in &files {
        let shown = file.display();
        let outcome = std::fs::read_to_string(file)
            .map_err(|err| format!("cannot read the file: {err}"))
            .and_then(|text| parser_from_yaml(&text));
        let parser = match outcome {
            Ok(parser) => parser,
            Err(message) => {
                println!("{shown}: failed: {message}");
                n_failed += 1;
                continue;
            }
        };
        let (status, response) = server.send("PUT", &parser.name, Some(parser.request_body()))?;
        match status {
            201 | 200 => {
                let verb = if status == 201 { "created" } else { "replaced" };
                println!("{shown}: {verb} {}", parser.name);
                n_ok += 1;
            }
            _ => {
                println!("{shown}: failed ({status}): {}", error_message(&response));
                n_failed += 1;
            }
        }
    }
    println!("{n_ok} imported, {n_failed} failed");
    Ok(if n_failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn collect_yaml(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let is_yaml = entry.extension().is_some_and(|ext| ext == "yaml" || ext == "yml");
            if entry.is_dir() || is_yaml {
                collect_yaml(&entry, files)?;
            }
        }
        return Ok(());
    }
    files.push(path.to_path_buf());
    Ok(())
}

/// A saved function read from a Sentinel parser file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportedParser {
    pub name: String,
    pub parameters: String,
    pub body: String,
    pub category: String,
    pub display_name: String,
    pub description: String,
}

impl ImportedParser {
    fn request_body(&self) -> Json {
        json!({
            "body": self.body,
            "parameters": self.parameters,
            "category": self.category,
            "displayName": self.display_name,
            "description": self.description,
        })
    }
}

/// Reads a Sentinel parser file. The name queries use is `FunctionAlias`
/// (classic parsers) or `ParserName` (ASIM), else `FunctionName`.
pub(crate) fn parser_from_yaml(text: &str) -> Result<ImportedParser, String> {
    let document: yaml_serde::Value = yaml_serde::from_str(text).map_err(|err| format!("invalid YAML: {err}"))?;
    let field =
        |key: &str| document.get(key).and_then(|value| value.as_str()).map(str::trim).filter(|text| !text.is_empty());
    let name = field("FunctionAlias")
        .or_else(|| field("ParserName"))
        .or_else(|| field("FunctionName"))
        .ok_or("no FunctionAlias, ParserName or FunctionName: not a parser file")?;
    let body = document
        .get("FunctionQuery")
        .or_else(|| document.get("ParserQuery"))
        .and_then(|value| value.as_str())
        .filter(|text| !text.trim().is_empty())
        .ok_or("no FunctionQuery or ParserQuery")?;
    let params = document.get("FunctionParams").or_else(|| document.get("ParserParams"));
    let parameters = match params {
        None => String::new(),
        Some(value) if value.is_null() => String::new(),
        Some(value) => parameters_from_yaml(value)?,
    };
    let title = |key: &str| document.get(key).and_then(|section| section.get("Title")).and_then(|value| value.as_str());
    let display_name = field("FunctionName").or_else(|| title("Parser")).or_else(|| title("Function")).unwrap_or(name);
    let category = field("Category").unwrap_or(if field("ParserName").is_some() { "ASIM" } else { "Parsers" });
    Ok(ImportedParser {
        name: name.to_string(),
        parameters,
        body: body.to_string(),
        category: category.to_string(),
        display_name: display_name.to_string(),
        description: field("Description").unwrap_or("").to_string(),
    })
}

/// `- {Name, Type, Default}` entries as a KQL parameter list. A string
/// parameter's default that YAML unquoted (`Default: '*'` reads as `*`) is
/// written back as a KQL string literal; other defaults are KQL text.
fn parameters_from_yaml(params: &yaml_serde::Value) -> Result<String, String> {
    let Some(items) = params.as_sequence() else { return Err("FunctionParams is not a list".to_string()) };
    let mut parts = Vec::new();
    for item in items {
        let name = item.get("Name").and_then(|value| value.as_str()).ok_or("a parameter has no Name")?;
        let kql_type =
            item.get("Type").and_then(|value| value.as_str()).ok_or(format!("parameter `{name}` has no Type"))?;
        let kql_type = kql_type.trim();
        let kql_type = kql_type.strip_prefix("table:").unwrap_or(kql_type).trim();
        let mut part = format!("{name}:{kql_type}");
        if let Some(default) = item.get("Default").filter(|value| !value.is_null()) {
            let text = match default {
                yaml_serde::Value::String(text) => {
                    let quoted = text.starts_with('\'')
                        || text.starts_with('"')
                        || text.starts_with("@'")
                        || text.starts_with("@\"");
                    if kql_type.eq_ignore_ascii_case("string") && !quoted {
                        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
                    } else {
                        text.clone()
                    }
                }
                yaml_serde::Value::Bool(flag) => flag.to_string(),
                yaml_serde::Value::Number(number) => number.to_string(),
                _ => return Err(format!("parameter `{name}`: Default must be a scalar")),
            };
            part.push_str(&format!("={text}"));
        }
        parts.push(part);
    }
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_parser_files_use_the_alias_and_quote_string_defaults() {
        let text = "Function:\n  Title: Parser for Contoso\nFunctionName: ContosoParser\nFunctionAlias: ContosoEvent\nCategory: Microsoft Sentinel Parser\nFunctionParams:\n  - Name: starttime\n    Type: datetime\n    Default: datetime(null)\n  - Name: user\n    Type: string\n    Default: '*'\n  - Name: limit\n    Type: long\n    Default: 10\n  - Name: quoted\n    Type: string\n    Default: \"'it''s'\"\n  - Name: T\n    Type: table:(*)\nFunctionQuery: |\n  Contoso_CL\n  | take limit\n";
        let parser = parser_from_yaml(text).unwrap();
        assert_eq!(parser.name, "ContosoEvent");
        assert_eq!(parser.display_name, "ContosoParser");
        assert_eq!(parser.category, "Microsoft Sentinel Parser");
        assert_eq!(
            parser.parameters,
            "starttime:datetime=datetime(null), user:string='*', limit:long=10, quoted:string='it''s', T:(*)"
        );
        assert_eq!(parser.body, "Contoso_CL\n| take limit\n");
    }

    #[test]
    fn asim_parser_files_use_the_parser_name() {
        let text = "Parser:\n  Title: DNS from X\nParserName: vimDnsX\nEquivalentBuiltInParser: _Im_Dns_X\nParserParams:\n  - Name: disabled\n    Type: bool\n    Default: false\n  - Name: domain\n    Type: string\n    Default: \"it's\"\nParserQuery: |\n  X_CL | where not(disabled)\n";
        let parser = parser_from_yaml(text).unwrap();
        assert_eq!(parser.name, "vimDnsX");
        assert_eq!(parser.display_name, "DNS from X");
        assert_eq!(parser.category, "ASIM");
        assert_eq!(parser.parameters, "disabled:bool=false, domain:string='it\\'s'");
    }

    #[test]
    fn files_that_are_not_parsers_say_why() {
        assert!(parser_from_yaml("id: 1\nquery: T").unwrap_err().contains("not a parser file"));
        assert!(parser_from_yaml("FunctionName: F\n").unwrap_err().contains("no FunctionQuery"));
        assert!(parser_from_yaml("FunctionName: F\nFunctionQuery: T\nFunctionParams:\n  - Type: string\n")
            .unwrap_err()
            .contains("no Name"));
        assert!(parser_from_yaml(": : :").unwrap_err().contains("invalid YAML"));
    }
}
