//! The `grok` transform: the `grok` crate's bundled legacy pattern
//! library and its pattern splitter, expanded here into one regex per
//! pattern and matched with PCRE2 (grok spec 6), plus typed captures
//! (`:int`, `:float`), nested field references, several patterns per
//! field, `break_on_match`, `overwrite`, tags on failure and on timeout.
//!
//! The expansion is ours, not the crate's, because the crate hides both
//! the expanded regex and PCRE2's match errors: through it, a match that
//! ran out of budget looks like no match at all.
//!
//! Timeouts: PCRE2 bounds a match by steps, not time, and lets a pattern
//! only lower the library's limit (10 million steps, tens of milliseconds
//! with the JIT). So each regex starts with `(*LIMIT_MATCH=n)`, n being
//! `timeout_millis` times the steps per millisecond PCRE2 manages on a slow
//! backtracking pattern on this machine (measured once per process): a
//! runaway match stops by the timeout, or at the library's limit if that
//! comes first. PCRE2 counts afresh at each start position, so an
//! unanchored pattern that is slow (under the limit) at every position of
//! a long line can take longer; anchor patterns with `^`. A match that hits
//! a limit, or returns after the deadline, is tagged `_groktimeout`; with
//! `timeout_scope = "event"` the deadline covers all of the event's
//! patterns (each match keeps its own step limit).
//!
//! Measured and not kept: splitting an unanchored search into one `\G`
//! match per start position, with the clock checked between them, bounds
//! it by the deadline but loses PCRE2's own search: a pattern PCRE2 fails
//! in 0.3 ms took 400 ms, and lines failing a pattern cost 30–100 times more.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use grok::parser::{grok_split, GrokComponent};
use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};
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
    /// The timeout covers all patterns of an event, not each one.
    timeout_per_event: bool,
    keep_empty_captures: bool,
    target: Option<FieldRef>,
}

struct CompiledPattern {
    source: String,
    /// The expanded regex, without limits.
    text: String,
    /// Steps per start position the timeout allows (the library's limit
    /// when lower or when there is no timeout).
    limit: u64,
    /// The regex with `limit`: what nearly every match uses.
    regex: Regex,
    /// The same with a larger JIT stack, made the first time a match
    /// overflows the default one.
    deep: OnceLock<Result<Regex, String>>,
    /// Capture group index → (field, conversion), resolved once.
    captures: Vec<(usize, FieldRef, Conversion)>,
}

/// How a match ended, short of success.
enum Miss {
    NoMatch,
    /// Out of budget; why.
    Timeout(String),
    Error(String),
}

#[derive(Debug, Clone, Copy)]
enum Conversion {
    None,
    Int,
    Float,
}

/// Pattern name → definition: the bundled legacy set.
fn default_library() -> &'static HashMap<String, String> {
    static LIBRARY: OnceLock<HashMap<String, String>> = OnceLock::new();
    LIBRARY.get_or_init(|| grok::patterns().iter().map(|(name, regex)| (name.to_string(), regex.to_string())).collect())
}

/// PCRE2 errors that mean the match ran out of budget.
const LIMIT_ERRORS: [i32; 4] = [
    pcre2_sys::PCRE2_ERROR_MATCHLIMIT,
    pcre2_sys::PCRE2_ERROR_DEPTHLIMIT,
    pcre2_sys::PCRE2_ERROR_HEAPLIMIT,
    pcre2_sys::PCRE2_ERROR_JIT_STACKLIMIT,
];

/// The JIT stack of a pattern's second try, for a match that overflowed
/// the default one (32 KiB). Not the first try's: the pcre2 crate makes a
/// custom stack per match, which more than halved grok's throughput.
const DEEP_JIT_STACK_BYTES: usize = 4 << 20;

fn builder() -> RegexBuilder {
    let mut builder = RegexBuilder::new();
    builder.jit_if_available(true).utf(true);
    builder
}

/// PCRE2 match steps per millisecond on a pattern that backtracks slowly
/// (nested alternation), measured once: after a warm-up run, the median
/// of three, less a margin (without it, runaway matches of this kind
/// stopped at 1.13–1.19 times the timeout), so a limit made from it
/// stops a runaway match by the timeout.
fn steps_per_milli() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        const STEPS: u64 = 1_000_000;
        const MARGIN: f64 = 0.85;
        let regex =
            builder().build(&format!("(*LIMIT_MATCH={STEPS})^(a|aa)+$")).expect("the calibration regex compiles");
        let subject = format!("{}!", "a".repeat(60));
        let mut millis: Vec<f64> = (0..4)
            .map(|_| {
                let started = Instant::now();
                let _ = regex.is_match(subject.as_bytes());
                (started.elapsed().as_secs_f64() * 1e3).max(1e-3)
            })
            .skip(1)
            .collect();
        millis.sort_by(f64::total_cmp);
        STEPS as f64 / millis[1] * MARGIN
    })
}

/// PCRE2's default match limit, which a pattern can only lower.
const LIBRARY_LIMIT: u64 = 10_000_000;

/// Match steps that fit in `budget`.
fn budget_steps(budget: Duration) -> f64 {
    budget.as_secs_f64() * 1e3 * steps_per_milli()
}

/// A grok pattern expanded into a regex, and what its capture groups fill.
struct Expansion {
    regex: String,
    /// Group name we chose → (field name as written, conversion as written).
    groups: HashMap<String, (String, String)>,
}

/// Deepest nesting of pattern references.
const MAX_DEPTH: usize = 64;

fn expand(pattern: &str, library: &HashMap<String, String>, named_only: bool) -> Result<Expansion, String> {
    let mut expansion = Expansion { regex: String::with_capacity(pattern.len() * 8), groups: HashMap::new() };
    let mut scope = Scope { library, inline: HashMap::new(), active: Vec::new() };
    expand_into(pattern, &mut scope, named_only, &mut expansion)?;
    Ok(expansion)
}

/// Pattern names in reach while expanding.
struct Scope<'a> {
    library: &'a HashMap<String, String>,
    /// `%{NAME=regex}` definitions met so far; they win over the library.
    inline: HashMap<&'a str, &'a str>,
    /// The names being expanded, outermost first (to refuse cycles).
    active: Vec<&'a str>,
}

fn expand_into<'a>(
    pattern: &'a str,
    scope: &mut Scope<'a>,
    named_only: bool,
    out: &mut Expansion,
) -> Result<(), String> {
    for component in grok_split(pattern) {
        match component {
            GrokComponent::RegularExpression { string, .. } => out.regex.push_str(string),
            GrokComponent::PatternError(err) => return Err(format!("cannot read {pattern:?}: {err:?}")),
            GrokComponent::GrokPattern { name, alias, extract, definition, .. } => {
                if !definition.is_empty() {
                    scope.inline.insert(name, definition);
                }
                let body = match scope.inline.get(name) {
                    Some(body) => *body,
                    None => scope
                        .library
                        .get(name)
                        .map(String::as_str)
                        .ok_or_else(|| format!("unknown pattern %{{{name}}}"))?,
                };
                if scope.active.contains(&name) {
                    return Err(format!("pattern %{{{name}}} refers to itself"));
                }
                if scope.active.len() >= MAX_DEPTH {
                    return Err(format!("patterns nest deeper than {MAX_DEPTH} levels"));
                }
                let field = if alias.is_empty() && !named_only { name } else { alias };
                if field.is_empty() && extract.is_empty() {
                    out.regex.push_str("(?:");
                } else {
                    let group = format!("_wp{}", out.groups.len());
                    out.regex.push_str("(?<");
                    out.regex.push_str(&group);
                    out.regex.push('>');
                    out.groups.insert(group, (field.to_string(), extract.to_string()));
                }
                scope.active.push(name);
                expand_into(body, scope, named_only, out)?;
                scope.active.pop();
                out.regex.push(')');
            }
        }
    }
    Ok(())
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
            let mut library = default_library().clone();
            library.extend(definitions);
            Some(library)
        };
        let library = library.as_ref().unwrap_or_else(|| default_library());
        let timeout_millis = options.u64("timeout_millis", 30_000)?;
        let timeout = (timeout_millis > 0).then(|| Duration::from_millis(timeout_millis));
        let timeout_per_event = match options.string("timeout_scope")?.as_deref() {
            None | Some("pattern") => false,
            Some("event") => true,
            Some(_) => return Err(options.error("timeout_scope must be \"pattern\" or \"event\"")),
        };
        let mut matches = Vec::new();
        for (field, patterns) in match_spec {
            let field = FieldRef::parse(&field).map_err(|e| options.error(e))?;
            let mut compiled = Vec::new();
            for source in patterns {
                compiled.push(compile_pattern(library, &source, named_only, timeout).map_err(|e| options.error(e))?);
            }
            matches.push((field, compiled));
        }
        let overwrite = options.strings("overwrite")?;
        let overwrite =
            overwrite.iter().map(|f| FieldRef::parse(f)).collect::<Result<_, _>>().map_err(|e| options.error(e))?;
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
            timeout,
            timeout_per_event,
            keep_empty_captures: options.bool("keep_empty_captures", false)?,
            target,
        })
    }
}

fn compile_pattern(
    library: &HashMap<String, String>,
    source: &str,
    named_only: bool,
    timeout: Option<Duration>,
) -> Result<CompiledPattern, String> {
    let expansion = expand(source, library, named_only).map_err(|e| format!("grok pattern {source:?}: {e}"))?;
    let text = expansion.regex;
    let limit = timeout.map_or(LIBRARY_LIMIT, |t| (budget_steps(t) as u64).clamp(1_000, LIBRARY_LIMIT));
    let regex = build(&text, limit, false).map_err(|e| format!("grok pattern {source:?} is not a valid regex: {e}"))?;
    let mut captures = Vec::new();
    for (index, name) in regex.capture_names().iter().enumerate() {
        let Some(name) = name else { continue };
        // Our groups carry the field as written; a `(?<name>...)` written
        // in a pattern fills the field of its name.
        let (field, extract) =
            expansion.groups.get(name).map_or((name.as_str(), ""), |(f, e)| (f.as_str(), e.as_str()));
        let conversion = match extract {
            "" => Conversion::None,
            "int" | "integer" | "long" => Conversion::Int,
            "float" | "double" => Conversion::Float,
            other => return Err(format!("grok pattern {source:?}: unknown conversion `{other}` (int or float)")),
        };
        if field.is_empty() {
            continue;
        }
        let field = FieldRef::parse(field).map_err(|e| format!("grok pattern {source:?}: {e}"))?;
        captures.push((index, field, conversion));
    }
    Ok(CompiledPattern { source: source.to_string(), text, limit, regex, deep: OnceLock::new(), captures })
}

/// Builds an expanded regex with a step limit, and with the larger JIT
/// stack when `deep`. `(?J)` lets a name repeat, as Oniguruma does (a
/// library pattern used twice brings its groups twice).
fn build(text: &str, limit: u64, deep: bool) -> Result<Regex, pcre2::Error> {
    let mut full = String::with_capacity(text.len() + 40);
    if limit < LIBRARY_LIMIT {
        full.push_str(&format!("(*LIMIT_MATCH={limit})"));
    }
    full.push_str("(?J)");
    full.push_str(text);
    let mut builder = builder();
    if deep {
        builder.max_jit_stack_size(Some(DEEP_JIT_STACK_BYTES));
    }
    builder.build(&full)
}

impl Transform for GrokTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        let mut matched_any = false;
        let mut timed_out = None;
        let mut error = None;
        let event_deadline = self.timeout.filter(|_| self.timeout_per_event).map(|t| (Instant::now() + t, t));
        'fields: for (field, patterns) in &self.matches {
            let Some(text) = event.get_text(field) else {
                continue;
            };
            for compiled in patterns {
                if event_deadline.is_some_and(|(at, _)| Instant::now() > at) {
                    timed_out = Some("the event's patterns ran over their time".to_string());
                    break 'fields;
                }
                let deadline = event_deadline.or_else(|| self.timeout.map(|t| (Instant::now() + t, t)));
                let locations = match compiled.search(&text, deadline) {
                    Ok(locations) => locations,
                    Err(Miss::NoMatch) => continue,
                    Err(Miss::Timeout(why)) => {
                        timed_out = Some(why);
                        continue;
                    }
                    Err(Miss::Error(why)) => {
                        error = Some(format!("grok pattern {:?}: {why}", compiled.source));
                        continue;
                    }
                };
                matched_any = true;
                let mut values = Vec::new();
                for (index, target, conversion) in &compiled.captures {
                    let Some((start, end)) = locations.get(*index) else {
                        continue;
                    };
                    if start == end && !self.keep_empty_captures {
                        continue;
                    }
                    // UTF mode matches at character boundaries.
                    let value = String::from_utf8_lossy(&text.as_bytes()[start..end]);
                    values.push((target.clone(), convert(&value, *conversion)));
                }
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
        if let Some(why) = timed_out {
            event.add_tag(&self.tag_on_timeout);
            return StepResult::Failed(format!("grok timed out: {why}"));
        }
        for tag in &self.tag_on_failure {
            event.add_tag(tag);
        }
        if let Some(error) = error {
            return StepResult::Failed(error);
        }
        let fields: Vec<String> = self.matches.iter().map(|(f, _)| f.to_string()).collect();
        let first = self.matches.first().and_then(|(_, p)| p.first()).map_or("", |p| p.source.as_str());
        StepResult::Failed(format!("no grok pattern matched {} (first pattern {first:?})", fields.join(", ")))
    }
}

impl CompiledPattern {
    /// Matches `text`; one that returns after `deadline` timed out.
    fn search(&self, text: &str, deadline: Option<(Instant, Duration)>) -> Result<CaptureLocations, Miss> {
        let outcome = self.run(&self.regex, text, false);
        match (outcome, deadline) {
            (Ok(_) | Err(Miss::NoMatch), Some((at, budget))) if Instant::now() > at => {
                Err(Miss::Timeout(format!("a match ran over {} ms", budget.as_millis())))
            }
            (outcome, _) => outcome,
        }
    }

    /// One match; a JIT stack overflow is tried again with the larger
    /// stack (`deep` says this is that try).
    fn run(&self, regex: &Regex, text: &str, deep: bool) -> Result<CaptureLocations, Miss> {
        let mut locations = regex.capture_locations();
        match regex.captures_read(&mut locations, text.as_bytes()) {
            Ok(Some(_)) => Ok(locations),
            Ok(None) => Err(Miss::NoMatch),
            Err(err) if err.code() == pcre2_sys::PCRE2_ERROR_JIT_STACKLIMIT && !deep => {
                let deep = self.deep.get_or_init(|| build(&self.text, self.limit, true).map_err(|e| e.to_string()));
                match deep {
                    Ok(regex) => self.run(regex, text, true),
                    Err(why) => Err(Miss::Error(why.clone())),
                }
            }
            Err(err) if LIMIT_ERRORS.contains(&err.code()) => {
                Err(Miss::Timeout(format!("a match gave up at PCRE2's limit ({err})")))
            }
            Err(err) => Err(Miss::Error(err.to_string())),
        }
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
