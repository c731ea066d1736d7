//! The `json` transform: parses a field holding JSON into the event root
//! or a target field.

use serde_json::Value as Json;

use crate::event::{Event, FieldRef};
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

pub(crate) struct JsonTransform {
    source: FieldRef,
    target: Option<FieldRef>,
    skip_on_invalid_json: bool,
    tag_on_failure: Vec<String>,
}

impl JsonTransform {
    pub(crate) fn compile(options: &mut Options) -> ConfigResult<JsonTransform> {
        let source = options.string("source")?.ok_or_else(|| options.error("option `source` is required"))?;
        let source = FieldRef::parse(&source).map_err(|e| options.error(e))?;
        let target = match options.string("target")? {
            Some(text) => Some(FieldRef::parse(&text).map_err(|e| options.error(e))?),
            None => None,
        };
        let tag_on_failure = match options.take("tag_on_failure") {
            None => vec!["_jsonparsefailure".to_string()],
            Some(value) => {
                Options::new(toml::Table::from_iter([("v".to_string(), value)]), options.location()).strings("v")?
            }
        };
        Ok(JsonTransform {
            source,
            target,
            skip_on_invalid_json: options.bool("skip_on_invalid_json", false)?,
            tag_on_failure,
        })
    }
}

impl Transform for JsonTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        let Some(Json::String(text)) = event.get(&self.source) else {
            return StepResult::Continue;
        };
        let parsed = match serde_json::from_str::<Json>(text) {
            Ok(parsed) => parsed,
            Err(err) => {
                if self.skip_on_invalid_json {
                    return StepResult::Continue;
                }
                for tag in &self.tag_on_failure {
                    event.add_tag(tag);
                }
                return StepResult::Failed(format!("{} is not valid JSON: {err}", self.source));
            }
        };
        match (&self.target, parsed) {
            (Some(target), value) => event.set(target, value),
            (None, Json::Object(map)) => {
                for (key, value) in map {
                    event.fields.insert(key, value);
                }
            }
            (None, _) => {
                for tag in &self.tag_on_failure {
                    event.add_tag(tag);
                }
                return StepResult::Failed(format!(
                    "{} holds JSON that is not an object and no target is set",
                    self.source
                ));
            }
        }
        StepResult::Continue
    }
}
