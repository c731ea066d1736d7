//! The `render` operator at the end of a query: the rows pass through
//! unchanged, and the visualization and its properties go back to the
//! client beside the result, as the query API's `render` object.

use serde_json::{json, Map, Value as Json};
use watchpost_kql_syntax::ast::{ExprKind, Literal, OperatorKind, Query, Statement};

/// How the client should chart the result (`render timechart with (...)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Render {
    pub visualization: String,
    /// The `with (...)` properties as written, each value as JSON.
    pub properties: Vec<(String, Json)>,
    /// Whether a `sort` or `top` comes right before `render`.
    pub is_query_sorted: bool,
}

impl Render {
    /// The query API's `render` object: the defaults the spec lists,
    /// overridden by the written properties.
    pub fn to_json(&self) -> Json {
        let mut object = Map::new();
        object.insert("visualization".into(), json!(self.visualization));
        object.insert("title".into(), Json::Null);
        object.insert("accumulate".into(), json!(false));
        object.insert("isQuerySorted".into(), json!(self.is_query_sorted));
        object.insert("kind".into(), json!("default"));
        object.insert("annotation".into(), json!(""));
        object.insert("by".into(), Json::Null);
        for (name, value) in &self.properties {
            object.insert(name.clone(), value.clone());
        }
        Json::Object(object)
    }
}

/// The `render` that ends the query's result statement, if any.
pub fn render_of(query: &Query) -> Option<Render> {
    let tabular = query.statements.iter().rev().find_map(|statement| match statement {
        Statement::Tabular(tabular) => Some(tabular),
        Statement::Let(_) => None,
    })?;
    let (last, before) = tabular.operators.split_last()?;
    let OperatorKind::Render { visualization, properties } = &last.kind else { return None };
    let properties = properties
        .iter()
        .map(|(name, values)| {
            let mut values: Vec<Json> = values.iter().map(|value| property_value(&value.kind)).collect();
            let value = if values.len() == 1 { values.remove(0) } else { Json::Array(values) };
            (name.name.clone(), value)
        })
        .collect();
    let is_query_sorted =
        before.last().is_some_and(|operator| matches!(operator.kind, OperatorKind::Sort(_) | OperatorKind::Top { .. }));
    Some(Render { visualization: visualization.name.clone(), properties, is_query_sorted })
}

/// A property value: literals as JSON, names (columns, `stacked`...) as text.
fn property_value(kind: &ExprKind) -> Json {
    match kind {
        ExprKind::Literal(Literal::String(text)) => json!(text),
        ExprKind::Literal(Literal::Bool(flag)) => json!(flag),
        ExprKind::Literal(Literal::Long(n)) => json!(n),
        ExprKind::Literal(Literal::Int(n)) => json!(n),
        ExprKind::Literal(Literal::Real(x)) => json!(x),
        ExprKind::Name(name) => json!(name.name),
        ExprKind::Unary { operand, .. } => match property_value(&operand.kind) {
            Json::Number(number) => number.as_f64().map_or(Json::Null, |x| json!(-x)),
            _ => Json::Null,
        },
        _ => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> Option<Render> {
        let (query, diagnostics) = watchpost_kql_syntax::parse(text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        render_of(&query)
    }

    #[test]
    fn reads_the_final_render_and_its_properties() {
        let found = render("T | sort by x | render timechart with (title = \"Hits\", ycolumns = a, b, ymin = -1)")
            .expect("a render");
        assert_eq!(found.visualization, "timechart");
        assert!(found.is_query_sorted);
        let object = found.to_json();
        assert_eq!(object["title"], json!("Hits"));
        assert_eq!(object["ycolumns"], json!(["a", "b"]));
        assert_eq!(object["ymin"], json!(-1.0));
        assert_eq!(object["kind"], json!("default"));
    }

    #[test]
    fn no_render_without_a_final_render_operator() {
        assert_eq!(render("T | take 1"), None);
        assert_eq!(render("let x = 1; T | render barchart | take 1"), None);
    }
}
