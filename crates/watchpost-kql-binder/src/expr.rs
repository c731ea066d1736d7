//! Binding of scalar expressions: names, literals, operators and calls.

use watchpost_diagnostics::Diagnostic;
use watchpost_kql_syntax::ast::{BinaryOp, Expr, ExprKind as Ast, Literal, UnaryOp};
use watchpost_schema::{KqlType, TableSchema};

use crate::bound::{BoundExpr, ExprKind, ScalarFunction, Value};
use crate::{closest, functions, Binder};

const NANOS_PER_TICK: i64 = 100;

impl Binder<'_> {
    /// Binds `expr` against the columns of `input`; reports and returns
    /// `None` on any error below it.
    pub(crate) fn bind_expr(&mut self, expr: &Expr, input: &TableSchema) -> Option<BoundExpr> {
        match &expr.kind {
            Ast::Literal(literal) => Some(literal_expr(literal)),
            Ast::Name(ident) => self.bind_name(&ident.name, expr, input),
            Ast::Paren(inner) => self.bind_expr(inner, input),
            Ast::Unary { op, operand } => {
                let operand = self.bind_expr(operand, input)?;
                match op {
                    UnaryOp::Plus => Some(operand),
                    UnaryOp::Neg => {
                        self.require_numeric_like(&operand, expr)?;
                        let ty = operand.ty;
                        Some(BoundExpr { kind: ExprKind::Negate(Box::new(operand)), ty })
                    }
                    UnaryOp::Not => Some(BoundExpr { kind: ExprKind::Not(Box::new(operand)), ty: KqlType::Bool }),
                }
            }
            Ast::Binary { op, left, right } => {
                let left = self.bind_expr(left, input);
                let right = self.bind_expr(right, input);
                self.bind_binary(*op, left?, right?, expr)
            }
            Ast::InList { op, expr: value, list } => {
                let value = self.bind_expr(value, input);
                let list: Vec<_> = list.iter().map(|item| self.bind_expr(item, input)).collect();
                let list = list.into_iter().collect::<Option<Vec<_>>>()?;
                Some(BoundExpr { kind: ExprKind::InList { op: *op, expr: Box::new(value?), list }, ty: KqlType::Bool })
            }
            Ast::Between { expr: value, low, high, negated } => {
                let value = self.bind_expr(value, input);
                let low = self.bind_expr(low, input);
                let high = self.bind_expr(high, input);
                let (value, low, high) = (value?, low?, high?);
                if !comparable(value.ty, low.ty) || !comparable(value.ty, high.ty) {
                    self.report(type_mismatch("between", value.ty, low.ty, expr));
                    return None;
                }
                Some(BoundExpr {
                    kind: ExprKind::Between {
                        expr: Box::new(value),
                        low: Box::new(low),
                        high: Box::new(high),
                        negated: *negated,
                    },
                    ty: KqlType::Bool,
                })
            }
            Ast::Call { name, args } => self.bind_call(&name.name, args, expr, input),
            Ast::Member { .. } | Ast::Index { .. } => {
                self.report(
                    Diagnostic::semantic("KQL2010", expr.span, "dynamic property access is not supported yet")
                        .with_hint("extract the value at ingest time, or wait for the dynamic type support"),
                );
                None
            }
        }
    }

    fn bind_name(&mut self, name: &str, expr: &Expr, input: &TableSchema) -> Option<BoundExpr> {
        if let Some(column) = input.column(name) {
            return Some(BoundExpr { kind: ExprKind::Column(name.to_string()), ty: column.kql_type });
        }
        if let Some(bound) = self.scalars.get(name) {
            return Some(bound.clone());
        }
        let mut diagnostic =
            Diagnostic::semantic("KQL2002", expr.span, format!("Failed to resolve scalar expression named '{name}'"));
        if let Some(similar) = closest(name, input.columns.iter().map(|column| column.name.as_str())) {
            diagnostic = diagnostic.with_hint(format!("did you mean '{similar}'?"));
        }
        self.report(diagnostic);
        None
    }

    fn bind_call(&mut self, name: &str, args: &[Expr], expr: &Expr, input: &TableSchema) -> Option<BoundExpr> {
        if name == "not" {
            if args.len() != 1 {
                self.report(arity_error(name, 1, 1, args.len(), expr));
                return None;
            }
            let operand = self.bind_expr(&args[0], input)?;
            return Some(BoundExpr { kind: ExprKind::Not(Box::new(operand)), ty: KqlType::Bool });
        }
        let Some(function) = functions::scalar(name) else {
            let message = if functions::aggregate(name).is_some() {
                format!("aggregate function '{name}' can only be used in summarize")
            } else {
                format!("Unknown function: '{name}'")
            };
            self.report(Diagnostic::semantic("KQL2003", expr.span, message));
            return None;
        };
        let (min, max) = functions::scalar_arity(function);
        if args.len() < min || args.len() > max {
            self.report(arity_error(name, min, max, args.len(), expr));
            return None;
        }
        let bound: Vec<_> = args.iter().map(|arg| self.bind_expr(arg, input)).collect();
        let bound = bound.into_iter().collect::<Option<Vec<_>>>()?;
        let types: Vec<KqlType> = bound.iter().map(|arg| arg.ty).collect();
        if matches!(function, ScalarFunction::Ago) && types[0] != KqlType::Timespan {
            self.report(
                Diagnostic::semantic("KQL2004", args[0].span, format!("ago() expects a timespan, got {}", types[0]))
                    .with_hint("write a timespan literal such as 1h or 7d"),
            );
            return None;
        }
        let ty = functions::scalar_return_type(function, &types);
        Some(BoundExpr { kind: ExprKind::Call { function, args: bound }, ty })
    }

    fn bind_binary(&mut self, op: BinaryOp, left: BoundExpr, right: BoundExpr, expr: &Expr) -> Option<BoundExpr> {
        use BinaryOp::*;
        let ty = match op {
            And | Or => {
                for side in [&left, &right] {
                    if side.ty != KqlType::Bool && side.ty != KqlType::Dynamic {
                        self.report(Diagnostic::semantic(
                            "KQL2005",
                            expr.span,
                            format!("'{}' expects bool operands, got {}", op.as_str(), side.ty),
                        ));
                        return None;
                    }
                }
                KqlType::Bool
            }
            Eq | NotEq | Lt | Le | Gt | Ge => {
                if !comparable(left.ty, right.ty) {
                    self.report(type_mismatch(op.as_str(), left.ty, right.ty, expr));
                    return None;
                }
                KqlType::Bool
            }
            Add | Sub | Mul | Div | Mod => match arithmetic_type(op, left.ty, right.ty) {
                Some(ty) => ty,
                None => {
                    self.report(type_mismatch(op.as_str(), left.ty, right.ty, expr));
                    return None;
                }
            },
            _ => KqlType::Bool,
        };
        Some(BoundExpr { kind: ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, ty })
    }

    fn require_numeric_like(&mut self, operand: &BoundExpr, expr: &Expr) -> Option<()> {
        if is_numeric(operand.ty) || operand.ty == KqlType::Timespan || operand.ty == KqlType::Dynamic {
            return Some(());
        }
        self.report(Diagnostic::semantic(
            "KQL2005",
            expr.span,
            format!("cannot negate a value of type {}", operand.ty),
        ));
        None
    }
}

/// Converts a syntax literal to a typed bound literal.
pub(crate) fn literal_expr(literal: &Literal) -> BoundExpr {
    let (value, ty) = literal_value(literal);
    BoundExpr { kind: ExprKind::Literal(value), ty }
}

/// The value and type of a literal.
pub(crate) fn literal_value(literal: &Literal) -> (Value, KqlType) {
    match literal {
        Literal::Null(type_name) => {
            let ty = type_name.as_deref().and_then(KqlType::from_name).unwrap_or(KqlType::Dynamic);
            (Value::Null, ty)
        }
        Literal::Bool(value) => (Value::Bool(*value), KqlType::Bool),
        Literal::Long(value) => (Value::Long(*value), KqlType::Long),
        Literal::Int(value) => (Value::Int(*value), KqlType::Int),
        Literal::Real(value) => (Value::Real(*value), KqlType::Real),
        Literal::String(value) => (Value::String(value.clone()), KqlType::String),
        Literal::Datetime(ticks) => (Value::Datetime(ticks.saturating_mul(NANOS_PER_TICK)), KqlType::Datetime),
        Literal::Timespan(ticks) => (Value::Timespan(ticks.saturating_mul(NANOS_PER_TICK)), KqlType::Timespan),
        Literal::Guid(text) => (Value::Guid(text.clone()), KqlType::Guid),
        Literal::Dynamic(text) => (Value::Dynamic(text.clone()), KqlType::Dynamic),
    }
}

pub(crate) fn is_numeric(ty: KqlType) -> bool {
    matches!(ty, KqlType::Int | KqlType::Long | KqlType::Real | KqlType::Decimal)
}

/// Whether two types can be compared with `==`, `<`...
pub(crate) fn comparable(left: KqlType, right: KqlType) -> bool {
    let textual = |ty| matches!(ty, KqlType::String | KqlType::Guid);
    left == right
        || left == KqlType::Dynamic
        || right == KqlType::Dynamic
        || (is_numeric(left) && is_numeric(right))
        || (textual(left) && textual(right))
}

fn arithmetic_type(op: BinaryOp, left: KqlType, right: KqlType) -> Option<KqlType> {
    use KqlType::*;
    let widest = |a: KqlType, b: KqlType| {
        if a == Real || b == Real {
            Real
        } else if a == Decimal || b == Decimal {
            Decimal
        } else if a == Long || b == Long {
            Long
        } else {
            Int
        }
    };
    match (op, left, right) {
        (_, Dynamic, _) | (_, _, Dynamic) => Some(Dynamic),
        (_, l, r) if is_numeric(l) && is_numeric(r) => Some(widest(l, r)),
        (BinaryOp::Sub, Datetime, Datetime) => Some(Timespan),
        (BinaryOp::Add | BinaryOp::Sub, Datetime, Timespan) => Some(Datetime),
        (BinaryOp::Add, Timespan, Datetime) => Some(Datetime),
        (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mod, Timespan, Timespan) => Some(Timespan),
        (BinaryOp::Div, Timespan, Timespan) => Some(Real),
        (BinaryOp::Mul | BinaryOp::Div, Timespan, r) if is_numeric(r) => Some(Timespan),
        (BinaryOp::Mul, l, Timespan) if is_numeric(l) => Some(Timespan),
        _ => None,
    }
}

fn type_mismatch(op: &str, left: KqlType, right: KqlType, expr: &Expr) -> Diagnostic {
    Diagnostic::semantic("KQL2006", expr.span, format!("Cannot apply '{op}' to values of types {left} and {right}"))
        .with_hint("convert one side with tostring(), tolong(), todouble() or todatetime()")
}

fn arity_error(name: &str, min: usize, max: usize, got: usize, expr: &Expr) -> Diagnostic {
    let expected = if min == max { format!("{min}") } else { format!("{min} to {max}") };
    Diagnostic::semantic("KQL2007", expr.span, format!("function '{name}' expects {expected} argument(s), got {got}"))
}
