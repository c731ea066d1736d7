//! Saved functions: what a valid one is, the REST API's JSON shape, and the
//! operations behind both the API and the control commands.

use serde_json::{json, Value as Json};
use watchpost_kql_binder::{parse_stored_function, StoredFunction};
use watchpost_metastore::{SaveMode, SavedFunction};
use watchpost_schema::standard::standard_table;

use crate::{is_identifier, require_write, Access, Control, ControlError, ControlResult};

/// A function to save, as written by the user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionSpec {
    pub name: String,
    /// The parameter list without parentheses.
    pub parameters: String,
    /// The body without braces.
    pub body: String,
    pub category: String,
    pub display_name: String,
    pub description: String,
}

impl FunctionSpec {
    /// Checks the name and that parameters and body parse as a KQL function.
    /// Names in the body are resolved when a query runs, as Log Analytics
    /// does, so a parser may be saved before the table it reads exists.
    pub fn validate(&self) -> ControlResult<()> {
        if !is_identifier(&self.name) {
            let message = format!(
                "`{}` is not a valid function name (letters, digits and `_`, not starting with a digit)",
                self.name
            );
            return Err(ControlError::InvalidInput(message));
        }
        if standard_table(&self.name).is_some() {
            return Err(ControlError::Conflict(format!("`{}` is the name of a table", self.name)));
        }
        if self.body.trim().is_empty() {
            return Err(ControlError::InvalidInput(format!("function `{}` has no body", self.name)));
        }
        let stored = StoredFunction { parameters: self.parameters.clone(), body: self.body.clone() };
        parse_stored_function(&stored).map(|_| ()).map_err(|message| {
            ControlError::InvalidInput(format!("function `{}` is not valid KQL: {message}", self.name))
        })
    }

    /// Reads the REST API's body: `{"body": "...", "parameters": ...,
    /// "category": "...", "displayName": "...", "description": "..."}`.
    /// `parameters` is KQL text (`"a:string='x', n:long"`, as Log Analytics'
    /// `functionParameters`) or a list of `{"name", "type", "default"}`.
    /// Log Analytics' saved-search names (`query`, `functionParameters`)
    /// are accepted too.
    pub fn from_json(name: &str, body: &Json) -> ControlResult<FunctionSpec> {
        let Some(object) = body.as_object() else {
            return Err(ControlError::InvalidInput("the request body must be a JSON object".to_string()));
        };
        let object = object.get("properties").and_then(Json::as_object).unwrap_or(object);
        let text = |keys: &[&str]| -> ControlResult<String> {
            for key in keys {
                match object.get(*key) {
                    None | Some(Json::Null) => continue,
                    Some(Json::String(text)) => return Ok(text.clone()),
                    Some(_) => return Err(ControlError::InvalidInput(format!("`{key}` must be a string"))),
                }
            }
            Ok(String::new())
        };
        let parameters = match object.get("parameters").or_else(|| object.get("functionParameters")) {
            None | Some(Json::Null) => String::new(),
            Some(Json::String(text)) => strip_parens(text).to_string(),
            Some(Json::Array(items)) => parameters_from_list(items)?,
            Some(_) => return Err(ControlError::InvalidInput("`parameters` must be a string or a list".to_string())),
        };
        let spec = FunctionSpec {
            name: name.to_string(),
            parameters,
            body: text(&["body", "query"])?,
            category: text(&["category"])?,
            display_name: text(&["displayName"])?,
            description: text(&["description"])?,
        };
        if spec.body.trim().is_empty() {
            return Err(ControlError::InvalidInput("the function needs a non-empty `body`".to_string()));
        }
        Ok(spec)
    }
}

/// `(a:string)` written with its parentheses is read as `a:string`.
fn strip_parens(text: &str) -> &str {
    let trimmed = text.trim();
    match trimmed.strip_prefix('(').and_then(|inner| inner.strip_suffix(')')) {
        Some(inner) => inner,
        None => trimmed,
    }
}

/// Turns `[{"name": "a", "type": "string", "default": "'x'"}]` into
/// `a:string='x'`. A default is KQL text, except that a JSON number or
/// boolean is written as its literal.
pub fn parameters_from_list(items: &[Json]) -> ControlResult<String> {
    let mut parts = Vec::new();
    for item in items {
        let name = item.get("name").and_then(Json::as_str);
        let kql_type = item.get("type").and_then(Json::as_str);
        let (Some(name), Some(kql_type)) = (name, kql_type) else {
            return Err(ControlError::InvalidInput("each parameter needs a `name` and a `type`".to_string()));
        };
        let mut part = format!("{name}:{}", kql_type.trim());
        match item.get("default") {
            None | Some(Json::Null) => {}
            Some(Json::String(text)) => part.push_str(&format!("={text}")),
            Some(Json::Number(number)) => part.push_str(&format!("={number}")),
            Some(Json::Bool(flag)) => part.push_str(&format!("={flag}")),
            Some(_) => {
                return Err(ControlError::InvalidInput(format!("parameter `{name}`: `default` must be KQL text")))
            }
        }
        parts.push(part);
    }
    Ok(parts.join(", "))
}

/// The REST API's JSON for a saved function.
pub fn function_json(function: &SavedFunction) -> Json {
    json!({
        "name": function.name,
        "parameters": function.parameters,
        "body": function.body,
        "category": function.category,
        "displayName": function.display_name,
        "description": function.description,
    })
}

impl Control {
    /// Saves a function after checking it. Returns whether one was replaced.
    pub fn save_function(
        &self,
        workspace: &str,
        spec: FunctionSpec,
        mode: SaveMode,
        access: Access,
    ) -> ControlResult<bool> {
        require_write(access, "change its functions")?;
        spec.validate()?;
        if self.store.table_info(workspace, &spec.name).is_some() {
            return Err(ControlError::Conflict(format!("`{}` is the name of a table", spec.name)));
        }
        let saved = SavedFunction {
            workspace: workspace.to_string(),
            name: spec.name,
            parameters: spec.parameters,
            body: spec.body,
            category: spec.category,
            display_name: spec.display_name,
            description: spec.description,
        };
        Ok(self.metastore.save_function(saved, mode)?)
    }

    /// Deletes a function. Returns whether it existed.
    pub fn drop_function(&self, workspace: &str, name: &str, access: Access) -> ControlResult<bool> {
        require_write(access, "change its functions")?;
        Ok(self.metastore.drop_function(workspace, name)?)
    }

    /// One saved function.
    pub fn function(&self, workspace: &str, name: &str) -> ControlResult<SavedFunction> {
        self.metastore
            .function(workspace, name)
            .ok_or_else(|| ControlError::NotFound(format!("function `{name}` does not exist")))
    }

    /// Every saved function of the workspace, in name order.
    pub fn functions(&self, workspace: &str) -> Vec<SavedFunction> {
        self.metastore.functions(workspace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_take_text_or_listed_parameters() {
        let body = json!({"body": "T | take n", "parameters": "(n:long=10)", "category": "Parsers"});
        let spec = FunctionSpec::from_json("F", &body).unwrap();
        assert_eq!(spec.parameters, "n:long=10");
        spec.validate().unwrap();
        let listed = json!({"query": "T", "parameters": [
            {"name": "s", "type": "string", "default": "'*'"},
            {"name": "n", "type": "long", "default": 5},
            {"name": "T", "type": "(*)"}
        ]});
        let spec = FunctionSpec::from_json("G", &listed).unwrap();
        assert_eq!(spec.parameters, "s:string='*', n:long=5, T:(*)");
        assert!(FunctionSpec::from_json("F", &json!({"parameters": "x:long"})).is_err(), "a body is required");
    }

    #[test]
    fn invalid_functions_are_refused_with_the_reason() {
        let spec = |name: &str, parameters: &str, body: &str| FunctionSpec {
            name: name.into(),
            parameters: parameters.into(),
            body: body.into(),
            ..FunctionSpec::default()
        };
        assert!(spec("1abc", "", "T").validate().unwrap_err().to_string().contains("not a valid function name"));
        assert!(matches!(spec("Syslog", "", "T").validate(), Err(ControlError::Conflict(_))));
        let err = spec("F", "", "T | where (").validate().unwrap_err();
        assert!(err.to_string().contains("not valid KQL"), "{err}");
        let err = spec("F", "x:", "T").validate().unwrap_err();
        assert!(err.to_string().contains("not valid KQL"), "{err}");
        spec("F", "x:long = 3, T:(TimeGenerated:datetime)", "let y = x * 2;\nT | take y;").validate().unwrap();
    }
}
