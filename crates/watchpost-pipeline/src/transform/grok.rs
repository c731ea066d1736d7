//! The `grok` transform: the `grok` crate's pattern expansion and bundled
//! legacy pattern library, compiled with PCRE2 (grok spec 6), plus what the
//! crate leaves to us: typed captures (`:int`, `:float`), nested field
//! references, several patterns per field, `break_on_match`, `overwrite`,
//! tags on failure and on timeout.
//!
//! Timeouts: the crate hides PCRE2's match context, so a runaway match is
//! bounded by PCRE2's backtracking limit (10 million steps by default,
//! a fraction of a second with the JIT); a match that fails after running
//! longer than `timeout_millis` is tagged `_groktimeout` instead of
//! `_grokparsefailure`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use grok::Grok;
use serde_json::Value as Json;

use crate::event::{Event, FieldRef};
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

pub(crate) struct GrokTransform {
    matches: Vec<(FieldRef, Vec<CompiledPattern>)>,
    break_on_match: bool,
    overwrite: Vec<FieldRef>,
    tag_on_failure: Vec<String>,
    tag_on_timeout: String,
    timeout: Option<Duration>,
    keep_empty_captures: bool,
    target: Option<FieldRef>,
}

struct CompiledPattern {
    source: String,
    pattern: grok::Pattern,
    /// Capture alias → (field, conversion), resolved once.
    captures: Vec<(String, FieldRef, Conversion)>,
}

#[derive(Debug, Clone, Copy)]
enum Conversion {
    None,
    Int,
    Float,
}

fn default_library() -> &'static Grok {
    static LIBRARY: OnceLock<Grok> = OnceLock::new();
    LIBRARY.get_or_init(Grok::with_default_patterns)
}

impl GrokTransform {
    pub(crate) fn compile(options: &mut Options) -> ConfigResult<GrokTransform> {
        let match_spec = options.strings_map("match")?;
        if match_spec.is_empty() {
            return Err(options.error("option `match` is required (field = pattern or [patterns])"));
        }
        let definitions = options.string_map("pattern_definitions")?;
        let named_only = options.bool("named_captures_only", true)?;
        if let Some(mode) = options.string("ecs_compatibility")? {
            if mode != "disabled" {
                return Err(options.error(format!(
                    "ecs_compatibility {mode:?} is not supported: Watchpost ships the legacy pattern set only"
                )));
            }
        }
        if options.take("patterns_dir").is_some() {
            return Err(options.error("option `patterns_dir` is not supported; use `pattern_definitions`"));
        }
        let library = if definitions.is_empty() {
            None
        } else {
            let mut grok = Grok::with_default_patterns();
            for (name, regex) in &definitions {
                grok.add_pattern(name.clone(), regex.clone());
            }
            Some(grok)
        };
        let grok = library.as_ref().unwrap_or_else(|| default_library());
        let mut matches = Vec::new();
        for (field, patterns) in match_spec {
            let field = FieldRef::parse(&field).map_err(|e| options.error(e))?;
            let mut compiled = Vec::new();
            for source in patterns {
                compiled.push(compile_pattern(grok, &source, named_only).map_err(|e| options.error(e))?);
            }
            matches.push((field, compiled));
        }
        let overwrite = options.strings("overwrite")?;
        let overwrite =
            overwrite.iter().map(|f| FieldRef::parse(f)).collect::<Result<_, _>>().map_err(|e| options.error(e))?;
        let timeout_millis = options.u64("timeout_millis", 30_000)?;
        if let Some(scope) = options.string("timeout_scope")? {
            if scope != "pattern" && scope != "event" {
                return Err(options.error("timeout_scope must be \"pattern\" or \"event\""));
            }
        }
        let tag_on_failure = match options.take("tag_on_failure") {
            None => vec!["_grokparsefailure".to_string()],
            Some(value) => {
                let mut scratch = Options::new(toml::Table::from_iter([("v".to_string(), value)]), options.location());
                scratch.strings("v")?
            }
        };
        let target = match options.string("target")? {
            Some(text) => Some(FieldRef::parse(&text).map_err(|e| options.error(e))?),
            None => None,
        };
        Ok(GrokTransform {
            matches,
            break_on_match: options.bool("break_on_match", true)?,
            overwrite,
            tag_on_failure,
            tag_on_timeout: options.string("tag_on_timeout")?.unwrap_or_else(|| "_groktimeout".to_string()),
            timeout: (timeout_millis > 0).then(|| Duration::from_millis(timeout_millis)),
            keep_empty_captures: options.bool("keep_empty_captures", false)?,
            target,
        })
    }
}

fn compile_pattern(grok: &Grok, source: &str, named_only: bool) -> Result<CompiledPattern, String> {
    let pattern = grok.compile(source, named_only).map_err(|e| format!("grok pattern {source:?}: {e}"))?;
    let mut captures = Vec::new();
    for alias in pattern.capture_names() {
        let conversion = match pattern.get_extract(alias) {
            None | Some("") => Conversion::None,
            Some("int" | "integer" | "long") => Conversion::Int,
            Some("float" | "double") => Conversion::Float,
            Some(other) => return Err(format!("grok pattern {source:?}: unknown conversion `{other}` (int or float)")),
        };
        // A repeated name comes back as `name[1]`; it fills the same field.
        let base = alias.split_once("[").filter(|_| !alias.starts_with('[')).map_or(alias, |(b, _)| b);
        let field = FieldRef::parse(base).map_err(|e| format!("grok pattern {source:?}: {e}"))?;
        captures.push((alias.to_string(), field, conversion));
    }
    Ok(CompiledPattern { source: source.to_string(), pattern, captures })
}

impl Transform for GrokTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        let mut matched_any = false;
        let mut timed_out = false;
        'fields: for (field, patterns) in &self.matches {
            let Some(text) = event.get_text(field) else {
                continue;
            };
            for compiled in patterns {
                let started = Instant::now();
                let Some(found) = compiled.pattern.match_against(&text) else {
                    if self.timeout.is_some_and(|limit| started.elapsed() > limit) {
                        timed_out = true;
                    }
                    continue;
                };
                matched_any = true;
                let mut values = Vec::new();
                for (alias, target, conversion) in &compiled.captures {
                    let Some(value) = found.get(alias) else {
                        continue;
                    };
                    if value.is_empty() && !self.keep_empty_captures {
                        continue;
                    }
                    values.push((target.clone(), convert(value, *conversion)));
                }
                drop(found);
                for (target, value) in values {
                    self.store(event, &target, value);
                }
                if self.break_on_match {
                    break 'fields;
                }
            }
        }
        if matched_any {
            return StepResult::Continue;
        }
        if timed_out {
            event.add_tag(&self.tag_on_timeout);
            return StepResult::Failed("grok timed out".to_string());
        }
        for tag in &self.tag_on_failure {
            event.add_tag(tag);
        }
        let fields: Vec<String> = self.matches.iter().map(|(f, _)| f.to_string()).collect();
        let first = self.matches.first().and_then(|(_, p)| p.first()).map_or("", |p| p.source.as_str());
        StepResult::Failed(format!("no grok pattern matched {} (first pattern {first:?})", fields.join(", ")))
    }
}

impl GrokTransform {
    fn store(&self, event: &mut Event, field: &FieldRef, value: Json) {
        let field = match &self.target {
            Some(target) => FieldRef { path: target.path.iter().chain(&field.path).cloned().collect() },
            None => field.clone(),
        };
        match event.get(&field) {
            Some(existing) if !self.overwrite.contains(&field) && existing != &value => {
                // Logstash appends to a field that already exists.
                let mut items = match existing.clone() {
                    Json::Array(items) => items,
                    other => vec![other],
                };
                items.push(value);
                event.set(&field, Json::Array(items));
            }
            _ => event.set(&field, value),
        }
    }
}

fn convert(text: &str, conversion: Conversion) -> Json {
    match conversion {
        Conversion::None => Json::String(text.to_string()),
        Conversion::Int => text.parse::<i64>().map(Json::from).unwrap_or_else(|_| Json::String(text.to_string())),
        Conversion::Float => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(text.to_string())),
    }
}
