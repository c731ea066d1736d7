//! The `csv` transform: one CSV record in a field becomes named fields
//! (RFC 4180 quoting, via the `csv` crate).

use serde_json::Value as Json;

use crate::event::{Event, FieldRef};
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

pub(crate) struct CsvTransform {
    source: FieldRef,
    columns: Vec<String>,
    separator: u8,
    quote: u8,
    skip_header: bool,
    autogenerate: bool,
    convert: Vec<(String, String)>,
    target: Option<FieldRef>,
}

fn single_byte(options: &Options, key: &str, text: Option<String>, default: u8) -> ConfigResult<u8> {
    match text {
        None => Ok(default),
        Some(text) if text.len() == 1 => Ok(text.as_bytes()[0]),
        Some(text) if text == "\\t" => Ok(b'\t'),
        Some(_) => Err(options.error(format!("`{key}` must be one ASCII character"))),
    }
}

impl CsvTransform {
    pub(crate) fn compile(options: &mut Options) -> ConfigResult<CsvTransform> {
        let source = FieldRef::parse(&options.string("source")?.unwrap_or_else(|| "message".into()))
            .map_err(|e| options.error(e))?;
        let separator = options.string("separator")?;
        let separator = single_byte(options, "separator", separator, b',')?;
        let quote = options.string("quote_char")?;
        let quote = single_byte(options, "quote_char", quote, b'"')?;
        let convert = options.string_map("convert")?;
        for (_, kind) in &convert {
            if !matches!(kind.as_str(), "integer" | "float" | "boolean" | "string") {
                return Err(options.error(format!("convert: unknown type {kind:?} (integer, float, boolean, string)")));
            }
        }
        let target = match options.string("target")? {
            Some(text) => Some(FieldRef::parse(&text).map_err(|e| options.error(e))?),
            None => None,
        };
        if options.bool("autodetect_column_names", false)? {
            return Err(options.error("option `autodetect_column_names` is not supported; list `columns`"));
        }
        Ok(CsvTransform {
            source,
            columns: options.strings("columns")?,
            separator,
            quote,
            skip_header: options.bool("skip_header", false)?,
            autogenerate: options.bool("autogenerate_column_names", true)?,
            convert,
            target,
        })
    }
}

impl Transform for CsvTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        let Some(Json::String(text)) = event.get(&self.source).cloned() else {
            return StepResult::Continue;
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(self.separator)
            .quote(self.quote)
            .flexible(true)
            .from_reader(text.as_bytes());
        let record = match reader.records().next() {
            Some(Ok(record)) => record,
            Some(Err(err)) => {
                event.add_tag("_csvparsefailure");
                return StepResult::Failed(format!("{} is not valid CSV: {err}", self.source));
            }
            None => return StepResult::Continue,
        };
        if self.skip_header && record.iter().eq(self.columns.iter().map(String::as_str)) {
            return StepResult::Drop("the CSV header row (skip_header)".to_string());
        }
        for (index, value) in record.iter().enumerate() {
            let name = match self.columns.get(index) {
                Some(name) => name.clone(),
                None if self.autogenerate => format!("column{}", index + 1),
                None => continue,
            };
            let kind = self.convert.iter().find(|(column, _)| *column == name).map(|(_, kind)| kind.as_str());
            let value = match kind {
                Some("integer") => value.trim().parse::<i64>().map(Json::from).unwrap_or_else(|_| Json::from(value)),
                Some("float") => value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Json::from(value), Json::Number),
                Some("boolean") => match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "t" | "yes" | "1" => Json::Bool(true),
                    "false" | "f" | "no" | "0" => Json::Bool(false),
                    _ => Json::from(value),
                },
                _ => Json::from(value),
            };
            let field = match &self.target {
                Some(target) => FieldRef { path: target.path.iter().cloned().chain([name]).collect() },
                None => FieldRef::single(&name),
            };
            event.set(&field, value);
        }
        StepResult::Continue
    }
}
