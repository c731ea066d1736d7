//! Which rows of a segment a filter can possibly keep, from the segment's
//! term filters (`watchpost_storage::terms`).
//!
//! A [`TermCheck`] is read off the filters DataFusion pushes into the scan:
//! `has`/`has_cs` (`kql_has(column, "literal", flag)`), equality of a string
//! column with a literal, `in` lists of literals, and `and`/`or` of those
//! (so `has_any` and `search`/`* has` over string columns qualify). Anything
//! else proves nothing and keeps every row. The rows of blocks the check
//! keeps still go through the real filter, so a false "maybe" only costs
//! time.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use watchpost_storage::terms::{needle_hashes, NeedleHashes, TermFilters};

/// What must hold for a row to pass, in terms the filters can answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TermCheck {
    /// Nothing is known: every row may pass.
    Unknown,
    /// The column's value holds every one of these term hashes.
    Terms {
        column: String,
        hashes: NeedleHashes,
    },
    And(Vec<TermCheck>),
    Or(Vec<TermCheck>),
}

impl TermCheck {
    /// The check for rows passing all of `filters`.
    pub(crate) fn of_filters(filters: &[Expr]) -> TermCheck {
        TermCheck::And(filters.iter().map(TermCheck::of_expr).collect()).simplified()
    }

    pub(crate) fn of_expr(expr: &Expr) -> TermCheck {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                TermCheck::And(vec![TermCheck::of_expr(left), TermCheck::of_expr(right)])
            }
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
                TermCheck::Or(vec![TermCheck::of_expr(left), TermCheck::of_expr(right)])
            }
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => match (column_of(left), text_of(right)) {
                (Some(column), Some(text)) => TermCheck::terms(column, text),
                _ => match (column_of(right), text_of(left)) {
                    (Some(column), Some(text)) => TermCheck::terms(column, text),
                    _ => TermCheck::Unknown,
                },
            },
            Expr::ScalarFunction(call) if call.func.name() == "kql_has" && call.args.len() == 3 => {
                match (column_of(&call.args[0]), text_of(&call.args[1])) {
                    (Some(column), Some(text)) => TermCheck::terms(column, text),
                    _ => TermCheck::Unknown,
                }
            }
            Expr::InList(list) if !list.negated => match column_of(&list.expr) {
                Some(column) => {
                    let items: Option<Vec<TermCheck>> =
                        list.list.iter().map(|item| text_of(item).map(|text| TermCheck::terms(column, text))).collect();
                    items.map(TermCheck::Or).unwrap_or(TermCheck::Unknown)
                }
                None => TermCheck::Unknown,
            },
            Expr::Alias(alias) => TermCheck::of_expr(&alias.expr),
            _ => TermCheck::Unknown,
        }
        .simplified()
    }

    fn terms(column: &str, text: &str) -> TermCheck {
        let hashes = needle_hashes(text);
        if hashes.is_empty() {
            TermCheck::Unknown
        } else {
            TermCheck::Terms { column: column.to_string(), hashes }
        }
    }

    /// Folds away `Unknown`s that decide nothing.
    fn simplified(self) -> TermCheck {
        match self {
            TermCheck::And(items) => {
                let mut kept: Vec<TermCheck> =
                    items.into_iter().map(TermCheck::simplified).filter(|item| *item != TermCheck::Unknown).collect();
                match kept.len() {
                    0 => TermCheck::Unknown,
                    1 => kept.pop().expect("one item"),
                    _ => TermCheck::And(kept),
                }
            }
            TermCheck::Or(items) => {
                let mut items: Vec<TermCheck> = items.into_iter().map(TermCheck::simplified).collect();
                if items.is_empty() || items.contains(&TermCheck::Unknown) {
                    TermCheck::Unknown
                } else if items.len() == 1 {
                    items.pop().expect("one item")
                } else {
                    TermCheck::Or(items)
                }
            }
            other => other,
        }
    }

    /// Per block of `filters`, whether a row there may pass; `None` when
    /// every row may.
    pub(crate) fn blocks(&self, filters: &TermFilters) -> Option<Vec<bool>> {
        match self {
            TermCheck::Unknown => None,
            TermCheck::Terms { column, hashes } => match filters.may_contain_all(column, hashes) {
                Ok(blocks) => blocks,
                Err(err) => {
                    tracing::warn!(error = %err, "could not read a term filter; scanning the whole segment");
                    None
                }
            },
            TermCheck::And(items) => {
                let mut result: Option<Vec<bool>> = None;
                for blocks in items.iter().filter_map(|item| item.blocks(filters)) {
                    result = Some(match result {
                        None => blocks,
                        Some(acc) => acc.iter().zip(&blocks).map(|(a, b)| *a && *b).collect(),
                    });
                }
                result
            }
            TermCheck::Or(items) => {
                let mut result: Option<Vec<bool>> = None;
                for item in items {
                    let blocks = item.blocks(filters)?;
                    result = Some(match result {
                        None => blocks,
                        Some(acc) => acc.iter().zip(&blocks).map(|(a, b)| *a || *b).collect(),
                    });
                }
                result
            }
        }
    }
}

/// The column `expr` reads, also through the cast that turns a column
/// read as a dictionary into plain strings.
fn column_of(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        Expr::Cast(cast) if cast.field.data_type() == &DataType::Utf8 => column_of(&cast.expr),
        _ => None,
    }
}

/// The text of a string literal, also one cast to a dictionary to be
/// compared with a dictionary column.
fn text_of(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Literal(value, _) => text_of_value(value),
        Expr::Cast(cast) => text_of(&cast.expr),
        _ => None,
    }
}

fn text_of_value(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) => Some(text),
        ScalarValue::Dictionary(_, inner) => text_of_value(inner),
        _ => None,
    }
}
