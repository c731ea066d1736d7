//! Printing expressions, literals and names.

use crate::ast::{BinaryOp, Expr, ExprKind, Literal, UnaryOp};
use crate::calendar;
use crate::lexer::{is_word_byte, is_word_start};

/// Words printed as `['word']` when used as names, because in some position
/// the parser would read them as keywords.
const RESERVED_WORDS: [&str; 22] = [
    "and",
    "or",
    "by",
    "asc",
    "desc",
    "nulls",
    "first",
    "last",
    "true",
    "false",
    "from",
    "to",
    "step",
    "let",
    "print",
    "datatable",
    "range",
    "in",
    "between",
    "matches",
    "has_any",
    "has_all",
];

/// Binding strength of each precedence level, weakest first.
const OR: u8 = 1;
const AND: u8 = 2;
const COMPARISON: u8 = 3;
const ADDITIVE: u8 = 4;
const MULTIPLICATIVE: u8 = 5;
const UNARY: u8 = 6;
const POSTFIX: u8 = 7;
const PRIMARY: u8 = 8;

/// Renders an expression, adding parentheses only where precedence needs them.
pub(super) fn expr_text(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Literal(literal) => literal_text(literal),
        ExprKind::Name(name) => ident_text(&name.name),
        ExprKind::Call { name, args } => {
            let args: Vec<String> = args.iter().map(expr_text).collect();
            format!("{}({})", name.name, args.join(", "))
        }
        ExprKind::Unary { op, operand: inner } => {
            let sign = if *op == UnaryOp::Neg { "-" } else { "+" };
            format!("{sign}{}", operand(inner, UNARY))
        }
        ExprKind::Binary { op, left, right } => binary_text(*op, left, right),
        ExprKind::InList { op, expr, list } => {
            let list: Vec<String> = list.iter().map(expr_text).collect();
            format!("{} {} ({})", operand(expr, ADDITIVE), op.as_str(), list.join(", "))
        }
        ExprKind::Between { expr, low, high, negated } => {
            let keyword = if *negated { "!between" } else { "between" };
            format!("{} {keyword} ({} .. {})", operand(expr, ADDITIVE), expr_text(low), expr_text(high))
        }
        ExprKind::Paren(inner) => format!("({})", expr_text(inner)),
        ExprKind::Member { expr, name } => format!("{}.{}", operand(expr, POSTFIX), ident_text(&name.name)),
        ExprKind::Index { expr, index } => format!("{}[{}]", operand(expr, POSTFIX), expr_text(index)),
        ExprKind::Star => "*".to_string(),
        ExprKind::ToScalar(tabular) => format!("toscalar({})", super::tabular_text(tabular, " ")),
        ExprKind::InTabular { op, expr, tabular } => {
            format!("{} {} ({})", operand(expr, ADDITIVE), op.as_str(), super::tabular_text(tabular, " "))
        }
        ExprKind::NamedArg { name, value } => format!("{} = {}", ident_text(&name.name), expr_text(value)),
    }
}

fn binary_text(op: BinaryOp, left: &Expr, right: &Expr) -> String {
    let level = binary_precedence(op);
    // Comparisons do not associate; the others associate to the left.
    let left_level = if level == COMPARISON { level + 1 } else { level };
    format!("{} {} {}", operand(left, left_level), op.as_str(), operand(right, level + 1))
}

/// Renders `expr`, parenthesized when it binds more loosely than `min_level`.
fn operand(expr: &Expr, min_level: u8) -> String {
    let text = expr_text(expr);
    if precedence(expr) < min_level {
        return format!("({text})");
    }
    text
}

fn precedence(expr: &Expr) -> u8 {
    match &expr.kind {
        ExprKind::Binary { op, .. } => binary_precedence(*op),
        ExprKind::InList { .. } | ExprKind::InTabular { .. } | ExprKind::Between { .. } => COMPARISON,
        // Only ever a whole call argument, never an operand.
        ExprKind::NamedArg { .. } => OR,
        ExprKind::Unary { .. } => UNARY,
        ExprKind::Member { .. } | ExprKind::Index { .. } => POSTFIX,
        ExprKind::Literal(_)
        | ExprKind::Name(_)
        | ExprKind::Call { .. }
        | ExprKind::Paren(_)
        | ExprKind::Star
        | ExprKind::ToScalar(_) => PRIMARY,
    }
}

fn binary_precedence(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Or => OR,
        BinaryOp::And => AND,
        BinaryOp::Add | BinaryOp::Sub => ADDITIVE,
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => MULTIPLICATIVE,
        _ => COMPARISON,
    }
}

/// Renders a name, bracketing it (`['my col']`) unless it is a plain word.
pub(super) fn ident_text(name: &str) -> String {
    let bytes = name.as_bytes();
    let plain = bytes.first().is_some_and(|&byte| is_word_start(byte))
        && bytes[1..].iter().all(|&byte| is_word_byte(byte))
        && !RESERVED_WORDS.contains(&name);
    if plain {
        return name.to_string();
    }
    format!("['{}']", escape(name, '\''))
}

pub(super) fn literal_text(literal: &Literal) -> String {
    match literal {
        Literal::Null(Some(type_name)) => format!("{type_name}(null)"),
        Literal::Null(None) => "dynamic(null)".to_string(),
        Literal::Bool(value) => value.to_string(),
        Literal::Long(value) if *value < 0 => format!("long({value})"),
        Literal::Long(value) => value.to_string(),
        Literal::Int(value) => format!("int({value})"),
        Literal::Real(value) => real_text(*value),
        Literal::String(value) => format!("\"{}\"", escape(value, '"')),
        Literal::Datetime(ticks) => format!("datetime({})", calendar::format_datetime(*ticks)),
        Literal::Timespan(ticks) if *ticks < 0 => {
            format!("time(-{})", calendar::format_timespan(ticks.saturating_neg()))
        }
        Literal::Timespan(ticks) => calendar::format_timespan(*ticks),
        Literal::Guid(text) => format!("guid({text})"),
        Literal::Dynamic(text) => format!("dynamic({text})"),
    }
}

fn real_text(value: f64) -> String {
    if value.is_nan() {
        return "real(nan)".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "real(inf)" } else { "real(-inf)" }.to_string();
    }
    // `{:?}` always shows a `.` or an exponent, so the text lexes as a real.
    if value.is_sign_negative() {
        return format!("real(-{:?})", -value);
    }
    format!("{value:?}")
}

/// Escapes `text` for a string quoted with `quote`.
fn escape(text: &str, quote: char) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            _ if ch == quote => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
    }
    out
}
