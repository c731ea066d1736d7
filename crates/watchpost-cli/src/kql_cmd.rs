//! `watchpost kql check` and `watchpost kql fmt`: the KQL front end on files,
//! without a server. `check` is what a content repository runs in CI before
//! rules reach a workspace; `fmt` prints a query in canonical form.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value as Json;
use watchpost_diagnostics::{Diagnostic, LineCol, Severity};
use watchpost_kql_binder::TableCatalog;
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

#[derive(Debug, Subcommand)]
pub(crate) enum KqlCommand {
    /// Parses KQL files, or the query of Sentinel YAML files (analytics
    /// rules, hunting queries, parsers), and with --schema binds them too.
    ///
    /// Prints `path:line:col: message` for each failing file, then
    /// `N passed, N failed`; exits 1 when any file failed.
    Check(CheckArgs),
    /// Prints a query in canonical form (one pipe operator per line).
    Fmt(FmtArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Table schemas as JSON, to bind queries against: an object of
    /// `{"Table": {"Column": "type", ...}}` or
    /// `{"Table": [{"name": "Column", "type": "type"}, ...]}`.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Files or directories. Directories are searched recursively for
    /// `.kql`, `.csl`, `.yaml` and `.yml` files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct FmtArgs {
    /// The query file; standard input when absent or `-`.
    path: Option<PathBuf>,
    /// Print nothing; exit 1 when the file is not in canonical form.
    #[arg(long)]
    check: bool,
}

pub(crate) fn run(command: KqlCommand) -> anyhow::Result<ExitCode> {
    match command {
        KqlCommand::Check(args) => check(args),
        KqlCommand::Fmt(args) => fmt(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let catalog = match &args.schema {
        Some(path) => Some(SchemaCatalog::load(path)?),
        None => None,
    };
    let mut files = Vec::new();
    for path in &args.paths {
        collect_files(path, &mut files)?;
    }
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for file in &files {
        match check_file(file, catalog.as_ref()) {
            FileOutcome::Passed => passed += 1,
            FileOutcome::Skipped => skipped += 1,
            FileOutcome::Failed(line) => {
                println!("{line}");
                failed += 1;
            }
        }
    }
    if skipped > 0 {
        eprintln!("{skipped} YAML file(s) without a query were skipped");
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Adds `path` (a file) or the query files under it (a directory), sorted.
fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !metadata.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if matches!(extension(&entry).as_str(), "kql" | "csl" | "yaml" | "yml") {
            files.push(entry);
        }
    }
    Ok(())
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|ext| ext.to_str()).unwrap_or("").to_ascii_lowercase()
}

enum FileOutcome {
    Passed,
    /// A YAML file with no query in it (a workbook, a data connector...).
    Skipped,
    /// The `path:line:col: message` line.
    Failed(String),
}

/// A query cut out of a file, and where its text starts in the file.
#[derive(Debug)]
struct Extracted {
    text: String,
    /// `let` statements declaring a parser's `FunctionParams`, bound in
    /// front of `text` so its references to them resolve.
    prelude: String,
    /// 0-based line of the query's first line in the file.
    first_line: usize,
    /// Columns every query line is indented by in the file (YAML blocks).
    indent: usize,
}

fn check_file(path: &Path, catalog: Option<&SchemaCatalog>) -> FileOutcome {
    let shown = path.display();
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(err) => return FileOutcome::Failed(format!("{shown}:1:1: cannot read the file: {err}")),
    };
    let extracted = if matches!(extension(path).as_str(), "yaml" | "yml") {
        match yaml_query(&source) {
            Ok(Some(extracted)) => extracted,
            Ok(None) => return FileOutcome::Skipped,
            Err((line, column, message)) => return FileOutcome::Failed(format!("{shown}:{line}:{column}: {message}")),
        }
    } else {
        Extracted { text: source, prelude: String::new(), first_line: 0, indent: 0 }
    };
    let full_text = format!("{}{}", extracted.prelude, extracted.text);
    match first_error(&full_text, catalog) {
        None => FileOutcome::Passed,
        Some(diagnostic) if (diagnostic.span.start as usize) < extracted.prelude.len() => FileOutcome::Failed(format!(
            "{shown}:{}:1: in FunctionParams: {}",
            extracted.first_line.max(1),
            diagnostic.message
        )),
        Some(diagnostic) => {
            // An error at the very end points at the last character, not past it.
            let offset =
                (diagnostic.span.start as usize - extracted.prelude.len()).min(extracted.text.trim_end().len());
            let at = LineCol::locate(&extracted.text, offset);
            let line = extracted.first_line + at.line as usize;
            let column = at.column as usize + extracted.indent;
            let mut message = diagnostic.message.clone();
            if let Some(hint) = &diagnostic.hint {
                message.push_str(&format!(" ({hint})"));
            }
            FileOutcome::Failed(format!("{shown}:{line}:{column}: {message}"))
        }
    }
}

/// The first error in `text`: syntax errors first, then (with a catalog)
/// binding errors.
fn first_error(text: &str, catalog: Option<&SchemaCatalog>) -> Option<Diagnostic> {
    let is_error = |diagnostic: &Diagnostic| diagnostic.severity == Severity::Error;
    let (query, diagnostics) = watchpost_kql_syntax::parse(text);
    if let Some(diagnostic) = diagnostics.into_iter().find(is_error) {
        return Some(diagnostic);
    }
    let catalog = catalog?;
    bind_without_data(&query, catalog).into_iter().find(is_error)
}

/// The most `bag_unpack()` plugins one query is checked through.
const MAX_BAG_PROBES: usize = 16;

/// Binds `query` without data: a `bag_unpack()` takes its columns from the
/// rows, so it is bound as if the bags had no keys. When the query binds
/// that way nothing after it depends on the keys and the query is valid;
/// when it does not, the problem may be a column only the data would
/// provide, so the diagnostic says the check needs data.
fn bind_without_data(query: &watchpost_kql_syntax::ast::Query, catalog: &SchemaCatalog) -> Vec<Diagnostic> {
    let mut bag_keys = watchpost_kql_binder::BagKeys::new();
    let mut first_probe = None;
    loop {
        let binding = watchpost_kql_binder::bind_with_bag_keys(query, catalog, &bag_keys);
        let Some(probe) = binding.probe else {
            return match first_probe {
                Some(span) if !binding.diagnostics.is_empty() => {
                    let message = "bag_unpack() takes its columns from the data, so this query cannot be checked \
                                   without it";
                    vec![Diagnostic::semantic("KQL3001", span, message)]
                }
                _ => binding.diagnostics,
            };
        };
        if bag_keys.len() >= MAX_BAG_PROBES {
            let message = format!("a query may use at most {MAX_BAG_PROBES} bag_unpack() plugins");
            return vec![Diagnostic::semantic("KQL3001", probe.span, message)];
        }
        first_probe.get_or_insert(probe.span);
        bag_keys.insert(probe.span, Vec::new());
    }
}

/// The query fields of Sentinel content: `query` in analytics rules and
/// hunting queries, `FunctionQuery` and `ParserQuery` in parsers.
const QUERY_KEYS: [&str; 3] = ["query", "FunctionQuery", "ParserQuery"];

/// Finds the query of a Sentinel YAML file. Errors carry a 1-based line and
/// column in the file.
fn yaml_query(source: &str) -> Result<Option<Extracted>, (usize, usize, String)> {
    let document: yaml_serde::Value = yaml_serde::from_str(source).map_err(|err| {
        let (line, column) = err.location().map_or((1, 1), |location| (location.line(), location.column()));
        (line, column, format!("invalid YAML: {err}"))
    })?;
    let Some(mapping) = document.as_mapping() else { return Ok(None) };
    for key in QUERY_KEYS {
        let Some(value) = mapping.get(key) else { continue };
        let Some(text) = value.as_str() else {
            let line = key_line(source, key).map_or(1, |line| line + 1);
            return Err((line, 1, format!("`{key}` is not a string")));
        };
        let (first_line, indent) = query_position(source, key);
        let prelude = function_params_prelude(mapping.get("FunctionParams"));
        return Ok(Some(Extracted { text: text.to_string(), prelude, first_line, indent }));
    }
    Ok(None)
}

/// `let` statements giving each scalar parameter of a parser's
/// `FunctionParams` a null of its type, so the parser body binds as it would
/// inside the saved function. Parameters of other kinds (tabular) are left
/// out. All on one line, ending with a newline.
fn function_params_prelude(params: Option<&yaml_serde::Value>) -> String {
    let Some(params) = params.and_then(|params| params.as_sequence()) else { return String::new() };
    let mut prelude = String::new();
    for param in params {
        let (Some(name), Some(kql_type)) =
            (param.get("Name").and_then(|name| name.as_str()), param.get("Type").and_then(|t| t.as_str()))
        else {
            continue;
        };
        let value = match kql_type.trim().to_ascii_lowercase().as_str() {
            "string" => "\"\"".to_string(),
            "double" => "real(null)".to_string(),
            kql_type @ ("datetime" | "dynamic" | "bool" | "boolean" | "int" | "long" | "real" | "decimal"
            | "timespan" | "guid") => format!("{kql_type}(null)"),
            _ => continue,
        };
        prelude.push_str(&format!("let {name} = {value}; "));
    }
    if !prelude.is_empty() {
        prelude.push('\n');
    }
    prelude
}

/// 0-based line of the top-level `key:` in `source`.
fn key_line(source: &str, key: &str) -> Option<usize> {
    source.lines().position(|line| line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':')))
}

/// Where the text of the top-level `key`'s value starts: for a block scalar
/// (`key: |`), the line after the key and the block's indentation; for a
/// value on the key's line, that line and the value's column. Folded blocks
/// (`>`) join lines, so their positions are approximate.
fn query_position(source: &str, key: &str) -> (usize, usize) {
    let Some(line_idx) = key_line(source, key) else { return (0, 0) };
    let line = source.lines().nth(line_idx).unwrap_or_default();
    let after_colon = line[key.len()..].trim_start().trim_start_matches(':');
    let value = after_colon.trim_start();
    if value.starts_with('|') || value.starts_with('>') || value.is_empty() {
        let indent = source
            .lines()
            .skip(line_idx + 1)
            .find(|line| !line.trim().is_empty())
            .map_or(0, |line| line.len() - line.trim_start().len());
        return (line_idx + 1, indent);
    }
    // An inline scalar: quoted values start one character later.
    let quote = usize::from(value.starts_with('"') || value.starts_with('\''));
    (line_idx, line.len() - value.len() + quote)
}

/// Table schemas read from a JSON file.
struct SchemaCatalog {
    tables: BTreeMap<String, TableSchema>,
}

impl SchemaCatalog {
    fn load(path: &Path) -> anyhow::Result<SchemaCatalog> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: Json = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        SchemaCatalog::from_json(&json).with_context(|| format!("reading the schemas in {}", path.display()))
    }

    fn from_json(json: &Json) -> anyhow::Result<SchemaCatalog> {
        let Some(tables) = json.as_object() else { bail!("expected an object of tables") };
        let mut catalog = BTreeMap::new();
        for (table, columns) in tables {
            let pairs: Vec<(String, String)> = match columns {
                Json::Object(columns) => columns
                    .iter()
                    .map(|(name, kql_type)| Ok((name.clone(), type_name(table, name, kql_type)?)))
                    .collect::<anyhow::Result<_>>()?,
                Json::Array(columns) => columns
                    .iter()
                    .map(|column| {
                        let name = column["name"]
                            .as_str()
                            .with_context(|| format!("table `{table}`: a column has no \"name\""))?;
                        Ok((name.to_string(), type_name(table, name, &column["type"])?))
                    })
                    .collect::<anyhow::Result<_>>()?,
                _ => bail!("table `{table}`: expected an object or a list of columns"),
            };
            let mut defs = Vec::new();
            for (name, type_name) in pairs {
                let Some(kql_type) = KqlType::from_name(&type_name) else {
                    bail!("table `{table}`, column `{name}`: unknown type `{type_name}`")
                };
                defs.push(ColumnDef::new(name, kql_type));
            }
            catalog.insert(table.clone(), TableSchema::new(defs));
        }
        Ok(SchemaCatalog { tables: catalog })
    }
}

fn type_name(table: &str, column: &str, value: &Json) -> anyhow::Result<String> {
    value
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("table `{table}`, column `{column}`: the type must be a string"))
}

impl TableCatalog for SchemaCatalog {
    fn table(&self, name: &str) -> Option<TableSchema> {
        self.tables.get(name).cloned()
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }
}

fn fmt(args: FmtArgs) -> anyhow::Result<ExitCode> {
    let (name, source) = match args.path.as_deref() {
        None => ("<stdin>".to_string(), read_stdin()?),
        Some(path) if path == Path::new("-") => ("<stdin>".to_string(), read_stdin()?),
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
    };
    let (query, diagnostics) = watchpost_kql_syntax::parse(&source);
    let errors: Vec<&Diagnostic> =
        diagnostics.iter().filter(|diagnostic| diagnostic.severity == Severity::Error).collect();
    if !errors.is_empty() {
        for diagnostic in errors {
            let at = LineCol::locate(&source, diagnostic.span.start as usize);
            eprintln!("{name}:{}:{}: {}", at.line, at.column, diagnostic.message);
        }
        return Ok(ExitCode::from(1));
    }
    let printed = watchpost_kql_syntax::print(&query);
    if args.check {
        let canonical = printed.trim_end() == source.trim_end();
        if !canonical {
            eprintln!("{name}: not in canonical form");
        }
        return Ok(if canonical { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    print!("{printed}");
    if !printed.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn read_stdin() -> anyhow::Result<String> {
    let mut source = String::new();
    std::io::stdin().read_to_string(&mut source).context("reading standard input")?;
    Ok(source)
}

#[cfg(test)]
mod corpus_execution;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_block_and_inline_queries_in_yaml() {
        let rule = "id: 1\nname: Rule\nquery: |\n  SecurityEvent\n  | where EventID == 4625\nseverity: Low\n";
        let extracted = yaml_query(rule).unwrap().unwrap();
        assert_eq!(extracted.text, "SecurityEvent\n| where EventID == 4625\n");
        assert_eq!((extracted.first_line, extracted.indent), (3, 2));
        let inline = "name: x\nquery: \"T | take 1\"\n";
        let extracted = yaml_query(inline).unwrap().unwrap();
        assert_eq!(extracted.text, "T | take 1");
        assert_eq!((extracted.first_line, extracted.indent), (1, 8));
        let parser = "FunctionName: Parser\nFunctionQuery: |\n    Syslog\n";
        assert_eq!(yaml_query(parser).unwrap().unwrap().indent, 4);
        assert!(yaml_query("name: workbook\nitems: []\n").unwrap().is_none());
        let with_params = "FunctionName: p\nFunctionParams:\n  - Name: starttime\n    Type: datetime\n    Default: datetime(null)\n  - Name: eventresult\n    Type: string\n    Default: '*'\n  - Name: t\n    Type: table:(*)\nFunctionQuery: |\n  T | where x\n";
        let extracted = yaml_query(with_params).unwrap().unwrap();
        assert_eq!(extracted.prelude, "let starttime = datetime(null); let eventresult = \"\"; \n");
        let (line, _, message) = yaml_query("name: [unclosed\n").unwrap_err();
        assert!(message.starts_with("invalid YAML"), "{message}");
        assert!(line >= 1);
    }

    #[test]
    fn schema_files_take_both_column_shapes() {
        let json = serde_json::json!({
            "SecurityEvent": {"EventID": "int", "Account": "string"},
            "Custom_CL": [{"name": "Message", "type": "string"}, {"name": "TimeGenerated", "type": "datetime"}]
        });
        let catalog = SchemaCatalog::from_json(&json).unwrap();
        assert_eq!(catalog.table_names(), ["Custom_CL", "SecurityEvent"]);
        assert_eq!(catalog.table("SecurityEvent").unwrap().column("EventID").unwrap().kql_type, KqlType::Int);
        let error = SchemaCatalog::from_json(&serde_json::json!({"T": {"c": "nonsense"}})).err().unwrap();
        assert!(error.to_string().contains("unknown type `nonsense`"), "{error}");
    }

    #[test]
    fn errors_map_to_file_positions() {
        let dir = tempfile::tempdir().unwrap();
        let rule = dir.path().join("rule.yaml");
        std::fs::write(&rule, "name: r\nquery: |\n  SecurityEvent\n  | where EventID ==\n").unwrap();
        let FileOutcome::Failed(line) = check_file(&rule, None) else { panic!("expected a failure") };
        let prefix = format!("{}:4:", rule.display());
        assert!(line.starts_with(&prefix), "{line}");

        let schema = SchemaCatalog::from_json(&serde_json::json!({"SecurityEvent": {"EventID": "int"}})).unwrap();
        let query = dir.path().join("q.kql");
        std::fs::write(&query, "SecurityEvent\n| where EventId == 4625\n").unwrap();
        assert!(matches!(check_file(&query, None), FileOutcome::Passed));
        let FileOutcome::Failed(line) = check_file(&query, Some(&schema)) else { panic!("expected a bind failure") };
        assert!(line.starts_with(&format!("{}:2:9: ", query.display())), "{line}");
        assert!(line.contains("EventId"), "{line}");

        // A parser's parameters are in scope for its body.
        let parser = dir.path().join("parser.yaml");
        let body = "FunctionName: p\nFunctionParams:\n  - Name: wanted\n    Type: int\nFunctionQuery: |\n  SecurityEvent\n  | where EventID == wanted\n";
        std::fs::write(&parser, body).unwrap();
        assert!(matches!(check_file(&parser, Some(&schema)), FileOutcome::Passed));
        std::fs::write(&parser, body.replace("Name: wanted", "Name: other")).unwrap();
        let FileOutcome::Failed(line) = check_file(&parser, Some(&schema)) else { panic!("expected a bind failure") };
        assert!(line.starts_with(&format!("{}:7:", parser.display())), "{line}");
    }

    #[test]
    fn bag_unpack_binds_without_data_unless_its_columns_are_used() {
        let schema = SchemaCatalog::from_json(&serde_json::json!({"T": {"Bag": "dynamic", "Name": "string"}})).unwrap();
        let valid = "T | evaluate bag_unpack(Bag) | where Name == 'x'";
        assert_eq!(first_error(valid, Some(&schema)), None);
        let needs_data = "T | evaluate bag_unpack(Bag) | where Key == 'x'";
        let diagnostic = first_error(needs_data, Some(&schema)).expect("a diagnostic");
        assert_eq!(diagnostic.code, "KQL3001");
        assert!(diagnostic.message.contains("cannot be checked without"), "{}", diagnostic.message);
    }
}
