//! Compiling transform configurations into a tree of steps and branches,
//! and running events through it.

mod csv;
mod date;
mod geoip;
mod grok;
mod json;
pub mod kql;
mod kv;
mod mutate;

use serde_json::Value as Json;
use toml::Value;

use crate::condition::Condition;
use crate::event::{Event, FieldRef};
use crate::options::{CommonOptions, ConfigError, ConfigResult, Options};

pub use self::date::DateFormat;
pub use self::kql::{KqlEngine, KqlOutcome, KqlProgram};

/// What one transform did to an event.
pub(crate) enum StepResult {
    Continue,
    /// The transform could not do its job (parse failure); the reason.
    Failed(String),
    /// The event is to be dropped; why.
    Drop(String),
}

pub(crate) trait Transform: Send + Sync {
    fn apply(&self, event: &mut Event) -> StepResult;

    /// True when the transform works best on many events at once (`kql`):
    /// the pipeline then runs batches through [`Transform::apply_batch`].
    fn batched(&self) -> bool {
        false
    }

    /// One result per event, in order.
    fn apply_batch(&self, events: &mut [&mut Event]) -> Vec<StepResult> {
        events.iter_mut().map(|event| self.apply(event)).collect()
    }
}

/// What happens to an event a transform fails on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop processing; send the event to the dead-letter table.
    DeadLetter,
    /// Add the failure tag (done in any case) and go on, as Logstash does.
    Tag,
    /// Stop processing and drop the event (counted, with the reason).
    Drop,
}

impl OnFailure {
    fn parse(text: &str) -> Option<OnFailure> {
        match text {
            "dead_letter" => Some(OnFailure::DeadLetter),
            "tag" => Some(OnFailure::Tag),
            "drop" => Some(OnFailure::Drop),
            _ => None,
        }
    }
}

/// The result of running one event through the transforms.
#[derive(Debug, Clone, PartialEq)]
pub enum Processed {
    Event(Event),
    Dropped { step: String, reason: String },
    DeadLetter { event: Event, step: String, reason: String },
}

struct Step {
    id: String,
    transform: Box<dyn Transform>,
    add_field: Vec<(FieldRef, String)>,
    add_tag: Vec<String>,
    remove_field: Vec<FieldRef>,
    remove_tag: Vec<String>,
    on_failure: OnFailure,
}

enum Node {
    Step(Step),
    Branch { arms: Vec<(Condition, Vec<Node>)>, otherwise: Vec<Node> },
}

/// A compiled list of transforms.
pub struct Transforms {
    nodes: Vec<Node>,
    /// Some step prefers batches ([`Transforms::process_batch`]).
    batched: bool,
}

/// Transform types this build knows.
pub const TRANSFORM_TYPES: &[&str] = &["grok", "date", "mutate", "json", "csv", "kv", "geoip", "kql", "drop", "if"];

/// What compiling needs besides the tables.
#[derive(Clone, Copy)]
struct Context<'a> {
    /// Applies where a step sets no `on_failure`.
    on_failure: OnFailure,
    kql: Option<&'a dyn KqlEngine>,
}

impl Transforms {
    /// Compiles `[[transform]]` tables. `location` prefixes error locations
    /// (e.g. `transform`); `default_on_failure` applies where a step sets
    /// no `on_failure`; `kql` compiles `kql` steps (without it they are a
    /// configuration error).
    pub fn compile(
        steps: &[Value],
        location: &str,
        default_on_failure: OnFailure,
        kql: Option<&dyn KqlEngine>,
    ) -> ConfigResult<Transforms> {
        let nodes = compile_nodes(steps, location, Context { on_failure: default_on_failure, kql })?;
        let batched = any_batched(&nodes);
        Ok(Transforms { nodes, batched })
    }

    /// True when some step prefers batches: callers should collect events
    /// and call [`Transforms::process_batch`].
    pub fn batched(&self) -> bool {
        self.batched
    }

    pub fn process(&self, mut event: Event) -> Processed {
        let flow = run_nodes(&self.nodes, &mut event);
        flow.outcome(event)
    }

    /// Runs events through together: each step sees all the events that
    /// reached it (a branch's arm those its condition chose). One result per
    /// event, in order; the same results as [`Transforms::process`] one by
    /// one.
    pub fn process_batch(&self, events: Vec<Event>) -> Vec<Processed> {
        if !self.batched {
            return events.into_iter().map(|event| self.process(event)).collect();
        }
        let mut done: Vec<Option<Processed>> = events.iter().map(|_| None).collect();
        let items = events.into_iter().enumerate().map(|(index, event)| Item { index, event }).collect();
        for item in run_nodes_batch(&self.nodes, items, &mut done) {
            done[item.index] = Some(Processed::Event(item.event));
        }
        done.into_iter().map(|outcome| outcome.expect("every event has an outcome")).collect()
    }
}

fn any_batched(nodes: &[Node]) -> bool {
    nodes.iter().any(|node| match node {
        Node::Step(step) => step.transform.batched(),
        Node::Branch { arms, otherwise } => arms.iter().any(|(_, nodes)| any_batched(nodes)) || any_batched(otherwise),
    })
}

enum Flow {
    Continue,
    Drop { step: String, reason: String },
    DeadLetter { step: String, reason: String },
}

impl Flow {
    fn outcome(self, event: Event) -> Processed {
        match self {
            Flow::Continue => Processed::Event(event),
            Flow::Drop { step, reason } => Processed::Dropped { step, reason },
            Flow::DeadLetter { step, reason } => Processed::DeadLetter { event, step, reason },
        }
    }
}

/// An event in a batch, with its place in the input.
struct Item {
    index: usize,
    event: Event,
}

/// Runs `items` through `nodes`; returns those that went through, in
/// input order, and records the outcome of the others in `done`.
fn run_nodes_batch(nodes: &[Node], mut items: Vec<Item>, done: &mut [Option<Processed>]) -> Vec<Item> {
    for node in nodes {
        if items.is_empty() {
            break;
        }
        items = match node {
            Node::Step(step) => {
                let results = if step.transform.batched() {
                    let mut events: Vec<&mut Event> = items.iter_mut().map(|item| &mut item.event).collect();
                    step.transform.apply_batch(&mut events)
                } else {
                    items.iter_mut().map(|item| step.transform.apply(&mut item.event)).collect()
                };
                let mut kept = Vec::with_capacity(items.len());
                for (mut item, result) in items.into_iter().zip(results) {
                    match finish_step(step, &mut item.event, result) {
                        Flow::Continue => kept.push(item),
                        flow => done[item.index] = Some(flow.outcome(item.event)),
                    }
                }
                kept
            }
            Node::Branch { arms, otherwise } => {
                let mut lanes: Vec<Vec<Item>> = (0..=arms.len()).map(|_| Vec::new()).collect();
                for item in items {
                    let lane = arms.iter().position(|(condition, _)| condition.eval(&item.event)).unwrap_or(arms.len());
                    lanes[lane].push(item);
                }
                let mut merged = Vec::new();
                for (lane, lane_items) in lanes.into_iter().enumerate() {
                    let nodes = arms.get(lane).map_or(otherwise.as_slice(), |(_, nodes)| nodes.as_slice());
                    merged.extend(run_nodes_batch(nodes, lane_items, done));
                }
                // Later batched steps see the events in input order.
                merged.sort_unstable_by_key(|item| item.index);
                merged
            }
        };
    }
    items
}

fn run_nodes(nodes: &[Node], event: &mut Event) -> Flow {
    for node in nodes {
        let flow = match node {
            Node::Step(step) => run_step(step, event),
            Node::Branch { arms, otherwise } => {
                let chosen = arms.iter().find(|(condition, _)| condition.eval(event)).map(|(_, nodes)| nodes);
                run_nodes(chosen.unwrap_or(otherwise), event)
            }
        };
        if !matches!(flow, Flow::Continue) {
            return flow;
        }
    }
    Flow::Continue
}

fn run_step(step: &Step, event: &mut Event) -> Flow {
    let result = step.transform.apply(event);
    finish_step(step, event, result)
}

/// The common options (`add_field`, tags, ...) after a step succeeded, or
/// `on_failure` after it failed.
fn finish_step(step: &Step, event: &mut Event, result: StepResult) -> Flow {
    match result {
        StepResult::Continue => {
            for (field, value) in &step.add_field {
                let value = Json::String(event.sprintf(value));
                match event.get(field).cloned() {
                    // Logstash turns an existing field into an array.
                    Some(Json::Array(mut items)) => {
                        items.push(value);
                        event.set(field, Json::Array(items));
                    }
                    Some(existing) => event.set(field, Json::Array(vec![existing, value])),
                    None => event.set(field, value),
                }
            }
            for tag in &step.add_tag {
                event.add_tag(&event.sprintf(tag));
            }
            for field in &step.remove_field {
                event.remove(field);
            }
            for tag in &step.remove_tag {
                event.remove_tag(tag);
            }
            Flow::Continue
        }
        StepResult::Drop(reason) => Flow::Drop { step: step.id.clone(), reason },
        StepResult::Failed(reason) => match step.on_failure {
            OnFailure::Tag => Flow::Continue,
            OnFailure::Drop => Flow::Drop { step: step.id.clone(), reason },
            OnFailure::DeadLetter => Flow::DeadLetter { step: step.id.clone(), reason },
        },
    }
}

fn compile_nodes(steps: &[Value], location: &str, context: Context<'_>) -> ConfigResult<Vec<Node>> {
    let mut nodes = Vec::with_capacity(steps.len());
    for (index, value) in steps.iter().enumerate() {
        let location = format!("{location}[{index}]");
        let Value::Table(table) = value else {
            return Err(ConfigError::new(location, "a transform must be a table with a `type`"));
        };
        nodes.push(compile_node(table.clone(), &location, context)?);
    }
    Ok(nodes)
}

fn condition(options: &mut Options, key: &str) -> ConfigResult<Option<Condition>> {
    match options.string(key)? {
        None => Ok(None),
        Some(text) => Condition::parse(&text).map(Some).map_err(|e| options.error(e)),
    }
}

fn node_list(options: &mut Options, key: &str, context: Context<'_>) -> ConfigResult<Vec<Node>> {
    match options.take(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => compile_nodes(&items, &format!("{}.{key}", options.location()), context),
        Some(_) => Err(options.error(format!("`{key}` must be an array of transforms"))),
    }
}

fn compile_node(mut table: toml::Table, location: &str, context: Context<'_>) -> ConfigResult<Node> {
    let kind = match table.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(ConfigError::new(location, "`type` must be a string")),
        None => return Err(ConfigError::new(location, "missing `type`")),
    };
    let mut options = Options::new(table, format!("{location} ({kind})"));
    if kind == "if" {
        let first = condition(&mut options, "condition")?.ok_or_else(|| options.error("`condition` is required"))?;
        let mut arms = vec![(first, node_list(&mut options, "then", context)?)];
        if let Some(value) = options.take("else_if") {
            let Value::Array(items) = value else {
                return Err(options.error("`else_if` must be an array of {condition, then} tables"));
            };
            for (index, item) in items.into_iter().enumerate() {
                let Value::Table(table) = item else {
                    return Err(options.error("`else_if` must be an array of {condition, then} tables"));
                };
                let mut arm = Options::new(table, format!("{}.else_if[{index}]", options.location()));
                let condition =
                    condition(&mut arm, "condition")?.ok_or_else(|| arm.error("`condition` is required"))?;
                let nodes = node_list(&mut arm, "then", context)?;
                arm.finish()?;
                arms.push((condition, nodes));
            }
        }
        let otherwise = node_list(&mut options, "else", context)?;
        options.finish()?;
        return Ok(Node::Branch { arms, otherwise });
    }
    let guard = condition(&mut options, "if")?;
    let on_failure = match options.string("on_failure")? {
        None => context.on_failure,
        Some(text) => OnFailure::parse(&text)
            .ok_or_else(|| options.error(format!("on_failure {text:?}: use dead_letter, tag or drop")))?,
    };
    let common = CommonOptions::take(&mut options)?;
    let transform: Box<dyn Transform> = match kind.as_str() {
        "grok" => Box::new(grok::GrokTransform::compile(&mut options)?),
        "date" => Box::new(date::DateTransform::compile(&mut options)?),
        "mutate" => Box::new(mutate::MutateTransform::compile(&mut options)?),
        "json" => Box::new(json::JsonTransform::compile(&mut options)?),
        "csv" => Box::new(csv::CsvTransform::compile(&mut options)?),
        "kv" => Box::new(kv::KvTransform::compile(&mut options)?),
        "geoip" => Box::new(geoip::GeoipTransform::compile(&mut options)?),
        "kql" => Box::new(kql::KqlTransform::compile(&mut options, context.kql, on_failure)?),
        "drop" => {
            if options.take("percentage").is_some() {
                return Err(options.error("option `percentage` is not supported"));
            }
            Box::new(DropTransform)
        }
        other => {
            return Err(ConfigError::new(
                location,
                format!("unsupported transform type `{other}`; this build knows {}", TRANSFORM_TYPES.join(", ")),
            ))
        }
    };
    options.finish()?;
    let parse_fields = |names: &[String]| -> ConfigResult<Vec<FieldRef>> {
        names.iter().map(|n| FieldRef::parse(n).map_err(|e| ConfigError::new(location, e))).collect()
    };
    let add_field = common
        .add_field
        .iter()
        .map(|(k, v)| Ok((FieldRef::parse(k).map_err(|e| ConfigError::new(location, e))?, v.clone())))
        .collect::<ConfigResult<_>>()?;
    let step = Step {
        id: common.id.clone().unwrap_or_else(|| format!("{location} ({kind})")),
        transform,
        add_field,
        add_tag: common.add_tag,
        remove_field: parse_fields(&common.remove_field)?,
        remove_tag: common.remove_tag,
        on_failure,
    };
    Ok(match guard {
        Some(condition) => Node::Branch { arms: vec![(condition, vec![Node::Step(step)])], otherwise: Vec::new() },
        None => Node::Step(step),
    })
}

struct DropTransform;

impl Transform for DropTransform {
    fn apply(&self, _event: &mut Event) -> StepResult {
        StepResult::Drop("dropped by a drop transform".to_string())
    }
}
