//! Kusto control commands sent as query text: `.create function`,
//! `.create-or-alter function`, `.alter function`, `.drop function`,
//! `.show functions`, `.show function`, `.show tables`, `.show table`,
//! `.create table`, `.create-merge table` and `.alter-merge table`. Each
//! answers with one table, as Kusto does.
//!
//! The grammar is small and line-oriented, so it is read by hand here
//! instead of through the KQL parser (which knows queries, not commands);
//! the function's parameters and body are then checked by the KQL parser.

use serde_json::{json, Value as Json};
use watchpost_metastore::{SaveMode, SavedFunction};
use watchpost_schema::{ColumnDef, KqlType};

use crate::functions::FunctionSpec;
use crate::tables::TableSpec;
use crate::{require_write, Access, CommandResult, Control, ControlError, ControlResult};

/// A parsed control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowFunctions,
    ShowFunction(String),
    SaveFunction {
        spec: FunctionSpec,
        mode: SaveMode,
        if_not_exists: bool,
    },
    DropFunction {
        name: String,
        if_exists: bool,
    },
    ShowTables,
    ShowTable(String),
    /// `.create table` (`merge` false: fails when the table exists),
    /// `.create-merge table` and `.alter-merge table`.
    DeclareTable {
        name: String,
        columns: Vec<ColumnDef>,
        merge: bool,
    },
}

/// Reads a control command (the text starts with `.`).
pub fn parse_command(text: &str) -> ControlResult<Command> {
    let mut cursor = Cursor { text, pos: 0 };
    cursor.skip_space();
    if !cursor.eat(".") {
        return Err(invalid("a control command starts with `.`"));
    }
    let verb = cursor.word().to_ascii_lowercase();
    let object = cursor.word().to_ascii_lowercase();
    let command = match (verb.as_str(), object.as_str()) {
        ("show", "functions") => Command::ShowFunctions,
        ("show", "function") => Command::ShowFunction(cursor.name()?),
        ("show", "tables") => Command::ShowTables,
        ("show", "table") => Command::ShowTable(cursor.name()?),
        ("create", "function") => function_command(&mut cursor, SaveMode::Create)?,
        ("create-or-alter", "function") => function_command(&mut cursor, SaveMode::CreateOrReplace)?,
        ("alter", "function") => function_command(&mut cursor, SaveMode::Replace)?,
        ("drop", "function") => {
            let name = cursor.name()?;
            let if_exists = cursor.eat_word("ifexists");
            Command::DropFunction { name, if_exists }
        }
        ("create", "table") => table_command(&mut cursor, false)?,
        ("create-merge" | "alter-merge", "table") => table_command(&mut cursor, true)?,
        _ => {
            let message = format!(
                "unsupported control command `.{verb} {object}`; supported: .show functions, .show function, \
                 .create function, .create-or-alter function, .alter function, .drop function, .show tables, \
                 .show table, .create table, .create-merge table, .alter-merge table"
            );
            return Err(ControlError::InvalidInput(message));
        }
    };
    if matches!(command, Command::SaveFunction { .. }) {
        return Ok(command);
    }
    cursor.skip_space();
    let rest = cursor.rest().trim_end_matches(';').trim();
    if !rest.is_empty() {
        return Err(ControlError::InvalidInput(format!("unexpected text after the command: `{rest}`")));
    }
    Ok(command)
}

/// `[ifnotexists] [with (k=v, ...)] Name(params) { body }`
fn function_command(cursor: &mut Cursor<'_>, mode: SaveMode) -> ControlResult<Command> {
    let if_not_exists = cursor.eat_word("ifnotexists");
    let mut spec = FunctionSpec::default();
    if cursor.eat_word("with") {
        for (key, value) in cursor.properties()? {
            match key.to_ascii_lowercase().as_str() {
                "folder" => spec.category = value,
                "docstring" => spec.description = value,
                "displayname" => spec.display_name = value,
                "skipvalidation" | "view" => {}
                other => return Err(ControlError::InvalidInput(format!("unknown function property `{other}`"))),
            }
        }
    }
    spec.name = cursor.name()?;
    cursor.skip_space();
    if !cursor.at("(") {
        return Err(invalid("expected `(` and the parameters after the function name"));
    }
    spec.parameters = cursor.balanced('(', ')')?.trim().to_string();
    cursor.skip_space();
    if !cursor.eat("{") {
        return Err(invalid("expected `{` and the function body"));
    }
    let rest = cursor.rest();
    let Some(close) = rest.rfind('}') else { return Err(invalid("the function body has no closing `}`")) };
    let after = rest[close + 1..].trim().trim_end_matches(';').trim();
    if !after.is_empty() {
        return Err(ControlError::InvalidInput(format!("unexpected text after the function body: `{after}`")));
    }
    spec.body = rest[..close].trim().to_string();
    Ok(Command::SaveFunction { spec, mode, if_not_exists })
}

/// `Name (Col:type, ...)`
fn table_command(cursor: &mut Cursor<'_>, merge: bool) -> ControlResult<Command> {
    let name = cursor.name()?;
    cursor.skip_space();
    if !cursor.at("(") {
        return Err(invalid("expected `(` and the columns after the table name"));
    }
    let inner = cursor.balanced('(', ')')?;
    let mut columns = Vec::new();
    for part in split_top_level(&inner, ',') {
        let Some((column, type_name)) = part.split_once(':') else {
            return Err(ControlError::InvalidInput(format!("expected `Column:type`, found `{}`", part.trim())));
        };
        let column = unbracket(column.trim());
        let Some(kql_type) = KqlType::from_name(type_name.trim()) else {
            return Err(ControlError::InvalidInput(format!("unknown type `{}`", type_name.trim())));
        };
        columns.push(ColumnDef::new(column, kql_type));
    }
    Ok(Command::DeclareTable { name, columns, merge })
}

impl Control {
    /// Runs a control command of `workspace`.
    pub fn run_command(&self, workspace: &str, text: &str, access: Access) -> ControlResult<CommandResult> {
        match parse_command(text)? {
            Command::ShowFunctions => Ok(functions_result(&self.functions(workspace))),
            Command::ShowFunction(name) => Ok(functions_result(&[self.function(workspace, &name)?])),
            Command::SaveFunction { spec, mode, if_not_exists } => {
                let name = spec.name.clone();
                if if_not_exists && self.metastore.function(workspace, &name).is_some() {
                    require_write(access, "change its functions")?;
                } else {
                    self.save_function(workspace, spec, mode, access)?;
                }
                Ok(functions_result(&[self.function(workspace, &name)?]))
            }
            Command::DropFunction { name, if_exists } => {
                let existed = self.drop_function(workspace, &name, access)?;
                if !existed && !if_exists {
                    return Err(ControlError::NotFound(format!("function `{name}` does not exist")));
                }
                let rows = if existed { vec![vec![json!(name)]] } else { Vec::new() };
                Ok(CommandResult { columns: vec![("Name".to_string(), KqlType::String)], rows })
            }
            Command::ShowTables => {
                let rows = self
                    .tables(workspace)
                    .iter()
                    .map(|table| vec![json!(table.name), json!(workspace), json!(""), json!("")])
                    .collect();
                Ok(CommandResult {
                    columns: string_columns(&["TableName", "DatabaseName", "Folder", "DocString"]),
                    rows,
                })
            }
            Command::ShowTable(name) => Ok(schema_result(&self.table(workspace, &name)?.schema.columns)),
            Command::DeclareTable { name, columns, merge } => {
                if !merge && self.store.table_info(workspace, &name).is_some() {
                    require_write(access, "change its tables")?;
                    return Err(ControlError::Conflict(format!(
                        "table `{name}` already exists; use .create-merge table"
                    )));
                }
                let info = self.put_table(workspace, TableSpec { name, columns, retention_days: None }, access)?;
                Ok(schema_result(&info.schema.columns))
            }
        }
    }
}

fn string_columns(names: &[&str]) -> Vec<(String, KqlType)> {
    names.iter().map(|name| (name.to_string(), KqlType::String)).collect()
}

/// Kusto's answer to `.show functions`: `Name, Parameters, Body, Folder, DocString`.
fn functions_result(functions: &[SavedFunction]) -> CommandResult {
    let rows = functions
        .iter()
        .map(|function| {
            vec![
                json!(function.name),
                json!(format!("({})", function.parameters)),
                json!(format!("{{ {} }}", function.body)),
                json!(function.category),
                json!(function.description),
            ]
        })
        .collect();
    CommandResult { columns: string_columns(&["Name", "Parameters", "Body", "Folder", "DocString"]), rows }
}

/// A table's columns: `AttributeName, AttributeType` (the .NET type, as
/// Kusto's `.show table` names it) and `ColumnType` (the KQL type).
fn schema_result(columns: &[ColumnDef]) -> CommandResult {
    let rows: Vec<Vec<Json>> = columns
        .iter()
        .map(|column| vec![json!(column.name), json!(column.kql_type.dotnet_name()), json!(column.kql_type.name())])
        .collect();
    CommandResult { columns: string_columns(&["AttributeName", "AttributeType", "ColumnType"]), rows }
}

fn invalid(message: &str) -> ControlError {
    ControlError::InvalidInput(message.to_string())
}

/// `['name']` or `["name"]` read as `name`.
fn unbracket(name: &str) -> String {
    let inner = name.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).map(str::trim);
    match inner {
        Some(quoted) if quoted.len() >= 2 && (quoted.starts_with('\'') || quoted.starts_with('"')) => {
            quoted[1..quoted.len() - 1].to_string()
        }
        _ => name.to_string(),
    }
}

/// Splits `text` at `separator`s outside brackets and string literals.
fn split_top_level(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        current.push(c);
        match (quote, c) {
            (Some(_), '\\') => {
                if let Some(escaped) = chars.next() {
                    current.push(escaped);
                }
            }
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            (None, c) if c == separator && depth == 0 => {
                current.pop();
                parts.push(std::mem::take(&mut current));
            }
            _ => {}
        }
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts
}

/// A position in the command text.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// Skips white space and `//` comments.
    fn skip_space(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if !trimmed.starts_with("//") {
                return;
            }
            self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
        }
    }

    fn at(&self, token: &str) -> bool {
        self.rest().starts_with(token)
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.at(token) {
            self.pos += token.len();
            return true;
        }
        false
    }

    /// A run of letters, digits, `_` and `-` (command words such as
    /// `create-or-alter`).
    fn word(&mut self) -> &'a str {
        self.skip_space();
        let rest = self.rest();
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// Eats `word` (case-insensitive) when it comes next as a whole word.
    fn eat_word(&mut self, word: &str) -> bool {
        let start = self.pos;
        if self.word().eq_ignore_ascii_case(word) {
            return true;
        }
        self.pos = start;
        false
    }

    /// A name: an identifier or `['bracketed name']`.
    fn name(&mut self) -> ControlResult<String> {
        self.skip_space();
        if self.at("[") {
            let inner = self.balanced('[', ']')?;
            return Ok(unbracket(&format!("[{inner}]")));
        }
        let rest = self.rest();
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if len == 0 {
            return Err(invalid("expected a name"));
        }
        self.pos += len;
        Ok(rest[..len].to_string())
    }

    /// The text between `open` (at the cursor) and its matching `close`,
    /// skipping string literals; the cursor moves past `close`.
    fn balanced(&mut self, open: char, close: char) -> ControlResult<String> {
        let rest = self.rest();
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for (idx, c) in rest.char_indices() {
            if let Some(open_quote) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == open_quote {
                    quote = None;
                }
                continue;
            }
            if c == '\'' || c == '"' {
                quote = Some(c);
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    self.pos += idx + c.len_utf8();
                    return Ok(rest[open.len_utf8()..idx].to_string());
                }
            }
        }
        Err(ControlError::InvalidInput(format!("`{open}` is never closed")))
    }

    /// `(key = value, ...)` where a value is a string literal or a word.
    fn properties(&mut self) -> ControlResult<Vec<(String, String)>> {
        self.skip_space();
        if !self.at("(") {
            return Err(invalid("expected `(` after `with`"));
        }
        let inner = self.balanced('(', ')')?;
        let mut properties = Vec::new();
        for part in split_top_level(&inner, ',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(ControlError::InvalidInput(format!("expected `name = value`, found `{}`", part.trim())));
            };
            properties.push((key.trim().to_string(), string_value(value.trim())));
        }
        Ok(properties)
    }
}

/// The value of a KQL string literal (`"a\"b"`, `'x'`, `@"c:\d"`), or the
/// text itself when it is not one.
fn string_value(text: &str) -> String {
    let (verbatim, text) = match text.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let quoted = text.len() >= 2
        && ((text.starts_with('"') && text.ends_with('"')) || (text.starts_with('\'') && text.ends_with('\'')));
    if !quoted {
        return text.to_string();
    }
    let inner = &text[1..text.len() - 1];
    if verbatim {
        return inner.to_string();
    }
    let mut value = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => value.push('\n'),
            Some('t') => value.push('\t'),
            Some(other) => value.push(other),
            None => {}
        }
    }
    value
}

#[cfg(test)]
mod tests;
