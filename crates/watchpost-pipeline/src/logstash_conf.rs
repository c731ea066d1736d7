//! A reader for the common subset of Logstash's `.conf` language (grok
//! spec 5): `input`, `filter` and `output` sections, plugin blocks with
//! `name => value` settings (strings, numbers, barewords, arrays, hashes),
//! `if / else if / else` in filters, `#` comments. It produces the same
//! [`PipelineConfig`] as a TOML document, so the same checks name any
//! plugin or option the engine does not support.
//!
//! Hand-written: the language is small, and the errors must carry the line.

use toml::Value;

use crate::config::PipelineConfig;
use crate::options::{ConfigError, ConfigResult};
use crate::transform::OnFailure;

/// Parses a `.conf` document. Failing filters tag the event and go on, as
/// in Logstash (`on_failure => "dead_letter"` on a filter changes that).
pub fn parse(text: &str, name: &str) -> ConfigResult<PipelineConfig> {
    let mut parser = Parser { text, pos: 0 };
    let mut sources = Vec::new();
    let mut transforms = Vec::new();
    let mut sinks = Vec::new();
    loop {
        parser.skip_space();
        if parser.at_end() {
            break;
        }
        let line = parser.line();
        let section = parser.word()?;
        parser.expect('{')?;
        match section.as_str() {
            "input" => {
                for (plugin, table, line) in parser.plugins_only("input")? {
                    sources.push(map_input(&plugin, table, line)?);
                }
            }
            "filter" => transforms.extend(parser.block_body()?),
            "output" => {
                for (plugin, table, line) in parser.plugins_only("output")? {
                    sinks.push(map_output(&plugin, table, line)?);
                }
            }
            other => return Err(error_at(line, format!("unknown section `{other}` (input, filter or output)"))),
        }
    }
    Ok(PipelineConfig {
        name: name.to_string(),
        data_dir: None,
        sources,
        transforms,
        sinks,
        on_failure: OnFailure::Tag,
    })
}

fn error_at(line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("line {line}"), message)
}

fn map_input(plugin: &str, mut table: toml::Table, line: usize) -> ConfigResult<toml::Table> {
    match plugin {
        "file" => {
            if let Some(path) = table.remove("path") {
                table.insert("paths".into(), path);
            }
            table.insert("type".into(), Value::from("file"));
        }
        "syslog" | "tcp" | "udp" => {
            move_listen(&mut table, "syslog", 514, line)?;
            table.insert("type".into(), Value::from("syslog"));
        }
        "http" => {
            move_listen(&mut table, "http", 8080, line)?;
            if let Some(user) = table.remove("user") {
                table.insert("username".into(), user);
            }
            match table.remove("codec") {
                None => {}
                Some(Value::String(codec)) if matches!(codec.as_str(), "json" | "json_lines") => {}
                Some(Value::String(codec)) if matches!(codec.as_str(), "plain" | "line") => {
                    table.insert("format".into(), Value::from("lines"));
                }
                Some(other) => {
                    return Err(error_at(
                        line,
                        format!("input http: codec {other} is not supported (json, json_lines, plain, line)"),
                    ))
                }
            }
            table.insert("type".into(), Value::from("http"));
        }
        other => return Err(error_at(line, format!("input plugin `{other}` is not supported (file, syslog, http)"))),
    }
    Ok(table)
}

/// Logstash's `host` and `port` (defaults: every address, `default_port`)
/// as the source's `listen`.
fn move_listen(table: &mut toml::Table, plugin: &str, default_port: i64, line: usize) -> ConfigResult<()> {
    let host = match table.remove("host") {
        Some(Value::String(host)) => host,
        _ => "0.0.0.0".to_string(),
    };
    let port = match table.remove("port") {
        Some(Value::Integer(port)) => port,
        Some(Value::String(port)) => port.parse().map_err(|_| error_at(line, format!("input {plugin}: bad port")))?,
        _ => default_port,
    };
    table.insert("listen".into(), Value::from(format!("{host}:{port}")));
    Ok(())
}

fn map_output(plugin: &str, mut table: toml::Table, line: usize) -> ConfigResult<toml::Table> {
    // `codec` only changes console formatting in Logstash.
    table.remove("codec");
    let kind = match plugin {
        "microsoft-logstash-output-azure-loganalytics"
        | "microsoft-sentinel-log-analytics-logstash-output-plugin"
        | "azure_loganalytics" => "data_collector",
        "stdout" => "stdout",
        "file" => "file",
        other => {
            return Err(error_at(
                line,
                format!(
                "output plugin `{other}` is not supported (microsoft-logstash-output-azure-loganalytics, stdout, file)"
            ),
            ))
        }
    };
    table.insert("type".into(), Value::from(kind));
    Ok(table)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn line(&self) -> usize {
        self.text[..self.pos].matches('\n').count() + 1
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        error_at(self.line(), message)
    }

    fn skip_space(&mut self) {
        loop {
            let trimmed = self.rest().trim_start();
            self.pos = self.text.len() - trimmed.len();
            if trimmed.starts_with('#') {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
                continue;
            }
            return;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.rest().chars().next()
    }

    fn expect(&mut self, c: char) -> ConfigResult<()> {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            return Ok(());
        }
        let found = self.rest().chars().take(20).collect::<String>();
        Err(self.error(format!("expected `{c}`, found {found:?}")))
    }

    fn word(&mut self) -> ConfigResult<String> {
        self.skip_space();
        let end = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '@'))
            .unwrap_or(self.rest().len());
        if end == 0 {
            let found = self.rest().chars().take(20).collect::<String>();
            return Err(self.error(format!("expected a name, found {found:?}")));
        }
        let word = self.rest()[..end].to_string();
        self.pos += end;
        Ok(word)
    }

    /// Plugins up to the closing `}` of an input or output section.
    fn plugins_only(&mut self, section: &str) -> ConfigResult<Vec<(String, toml::Table, usize)>> {
        let mut plugins = Vec::new();
        loop {
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(plugins);
            }
            if self.at_end() {
                return Err(self.error(format!("unclosed `{section}` section")));
            }
            let line = self.line();
            let name = self.word()?;
            if name == "if" {
                return Err(error_at(line, format!("conditionals in the {section} section are not supported")));
            }
            plugins.push((name, self.plugin_body()?, line));
        }
    }

    /// Filters and conditionals up to the closing `}`.
    fn block_body(&mut self) -> ConfigResult<Vec<Value>> {
        let mut nodes = Vec::new();
        loop {
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(nodes);
            }
            if self.at_end() {
                return Err(self.error("unclosed block"));
            }
            let line = self.line();
            let name = self.word()?;
            if name == "if" {
                nodes.push(self.conditional()?);
                continue;
            }
            if name == "else" {
                return Err(error_at(line, "`else` without `if`"));
            }
            let mut table = self.plugin_body()?;
            table.insert("type".into(), Value::from(name));
            nodes.push(Value::Table(table));
        }
    }

    fn conditional(&mut self) -> ConfigResult<Value> {
        let mut table = toml::Table::new();
        table.insert("type".into(), Value::from("if"));
        table.insert("condition".into(), Value::from(self.condition_text()?));
        table.insert("then".into(), Value::Array(self.block_body()?));
        let mut else_ifs = Vec::new();
        loop {
            let save = self.pos;
            if self.peek().is_none() || self.word().ok().as_deref() != Some("else") {
                self.pos = save;
                break;
            }
            let save_else = self.pos;
            if self.word().ok().as_deref() == Some("if") {
                let mut arm = toml::Table::new();
                arm.insert("condition".into(), Value::from(self.condition_text()?));
                arm.insert("then".into(), Value::Array(self.block_body()?));
                else_ifs.push(Value::Table(arm));
                continue;
            }
            self.pos = save_else;
            self.expect('{')?;
            table.insert("else".into(), Value::Array(self.block_body()?));
            break;
        }
        if !else_ifs.is_empty() {
            table.insert("else_if".into(), Value::Array(else_ifs));
        }
        Ok(Value::Table(table))
    }

    /// The condition text up to the `{` that opens its block, skipping
    /// strings and `/regex/` literals; consumes the `{`.
    fn condition_text(&mut self) -> ConfigResult<String> {
        self.skip_space();
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut index = self.pos;
        let mut after_match_op = false;
        while index < bytes.len() {
            match bytes[index] {
                b'"' | b'\'' => {
                    index = skip_quoted(bytes, index).ok_or_else(|| self.error("unclosed string in condition"))?;
                    after_match_op = false;
                    continue;
                }
                b'/' if after_match_op => {
                    index = skip_quoted(bytes, index).ok_or_else(|| self.error("unclosed /regex/ in condition"))?;
                    after_match_op = false;
                    continue;
                }
                b'~' => after_match_op = true,
                b'{' => {
                    let condition = self.text[start..index].trim().to_string();
                    self.pos = index + 1;
                    crate::condition::Condition::parse(&condition).map_err(|e| self.error(e))?;
                    return Ok(condition);
                }
                b if !b.is_ascii_whitespace() => after_match_op = false,
                _ => {}
            }
            index += 1;
        }
        Err(self.error("condition without a `{` block"))
    }

    fn plugin_body(&mut self) -> ConfigResult<toml::Table> {
        self.expect('{')?;
        let mut table = toml::Table::new();
        loop {
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(table);
            }
            if self.at_end() {
                return Err(self.error("unclosed plugin block"));
            }
            let key = self.key()?;
            self.skip_space();
            if !self.rest().starts_with("=>") {
                return Err(self.error(format!("expected `=>` after `{key}`")));
            }
            self.pos += 2;
            let value = self.value()?;
            // Logstash merges a setting given twice (e.g. two add_field).
            match (table.remove(&key), value) {
                (Some(Value::Table(mut old)), Value::Table(new)) => {
                    old.extend(new);
                    table.insert(key, Value::Table(old));
                }
                (Some(Value::Array(mut old)), Value::Array(new)) => {
                    old.extend(new);
                    table.insert(key, Value::Array(old));
                }
                (_, value) => {
                    table.insert(key, value);
                }
            }
        }
    }

    fn key(&mut self) -> ConfigResult<String> {
        match self.peek() {
            Some('"' | '\'') => self.string(),
            _ => self.word(),
        }
    }

    fn string(&mut self) -> ConfigResult<String> {
        let bytes = self.text.as_bytes();
        let end = skip_quoted(bytes, self.pos).ok_or_else(|| self.error("unclosed string"))?;
        let quote = bytes[self.pos] as char;
        let inner = &self.text[self.pos + 1..end - 1];
        self.pos = end;
        // Logstash keeps backslashes in strings except before the quote
        // (config.support_escapes is off by default).
        Ok(inner.replace(&format!("\\{quote}"), &quote.to_string()))
    }

    fn value(&mut self) -> ConfigResult<Value> {
        match self.peek() {
            Some('"' | '\'') => Ok(Value::String(self.string()?)),
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(']') {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    if !items.is_empty() {
                        self.expect(',')?;
                        if self.peek() == Some(']') {
                            continue;
                        }
                    }
                    items.push(self.value()?);
                }
            }
            Some('{') => {
                self.pos += 1;
                let mut table = toml::Table::new();
                loop {
                    if self.peek() == Some('}') {
                        self.pos += 1;
                        return Ok(Value::Table(table));
                    }
                    if self.peek() == Some(',') {
                        self.pos += 1;
                        continue;
                    }
                    let key = self.key()?;
                    self.skip_space();
                    if !self.rest().starts_with("=>") {
                        return Err(self.error(format!("expected `=>` after `{key}`")));
                    }
                    self.pos += 2;
                    let value = self.value()?;
                    table.insert(key, value);
                }
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let word = self.word()?;
                if let Ok(integer) = word.parse::<i64>() {
                    return Ok(Value::Integer(integer));
                }
                word.parse::<f64>().map(Value::Float).map_err(|_| self.error(format!("bad number {word:?}")))
            }
            Some(_) => {
                let word = self.word()?;
                Ok(match word.as_str() {
                    "true" => Value::Boolean(true),
                    "false" => Value::Boolean(false),
                    _ => Value::String(word),
                })
            }
            None => Err(self.error("expected a value")),
        }
    }
}

/// The index just past a quoted run starting at `start` (its first byte is
/// the quote), honouring backslash escapes.
fn skip_quoted(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = bytes[start];
    let mut index = start + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b if b == quote => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests;
