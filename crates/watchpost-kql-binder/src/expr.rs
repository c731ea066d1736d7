//! Binding of scalar expressions: names, literals, operators and calls.

use watchpost_diagnostics::Diagnostic;
use watchpost_kql_syntax::ast::{BinaryOp, Expr, ExprKind as Ast, ListOp, Literal, UnaryOp};
use watchpost_schema::{KqlType, TableSchema};

use crate::bound::{BoundExpr, ExprKind, ScalarFunction, Value};
use crate::functions::{self, Returns};
use crate::{closest, Binder};

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
                if let [Expr { kind: Ast::Name(ident), .. }] = list.as_slice() {
                    // `x in (T)` where `T` is a table or a tabular `let`.
                    if self.names_tabular(&ident.name, input) {
                        let source = watchpost_kql_syntax::ast::TabularSource::Table(ident.clone());
                        let tabular =
                            watchpost_kql_syntax::ast::TabularExpr { source, operators: Vec::new(), span: ident.span };
                        return self.bind_in_tabular(*op, value, &tabular, expr, input);
                    }
                }
                let value = self.bind_expr(value, input);
                let list: Vec<_> = list.iter().map(|item| self.bind_expr(item, input)).collect();
                let list = expand_dynamic_arrays(list.into_iter().collect::<Option<Vec<_>>>()?);
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
            Ast::Star => {
                let message = "`*` is only allowed as an argument of arg_max() and arg_min()";
                self.report(Diagnostic::semantic("KQL2011", expr.span, message));
                None
            }
            Ast::ToScalar(tabular) => self.bind_to_scalar(tabular, expr),
            Ast::InTabular { op, expr: value, tabular } => self.bind_in_tabular(*op, value, tabular, expr, input),
            Ast::NamedArg { name, .. } => {
                let message =
                    format!("named argument '{}': only user-defined functions take arguments by name", name.name);
                self.report(Diagnostic::semantic("KQL3001", expr.span, message));
                None
            }
            Ast::Member { expr: base, name } => {
                let base = self.bind_expr(base, input)?;
                let key = BoundExpr { kind: ExprKind::Literal(Value::String(name.name.clone())), ty: KqlType::String };
                self.bind_dynamic_step(base, key, expr)
            }
            Ast::Index { expr: base, index } => {
                let base = self.bind_expr(base, input);
                let index = self.bind_expr(index, input);
                let index = index?;
                if !matches!(index.ty, KqlType::String | KqlType::Int | KqlType::Long | KqlType::Dynamic) {
                    self.report(Diagnostic::semantic(
                        "KQL2010",
                        expr.span,
                        format!("an index into a dynamic value must be a string or an integer, got {}", index.ty),
                    ));
                    return None;
                }
                self.bind_dynamic_step(base?, index, expr)
            }
        }
    }

    /// Binds one step of a dynamic path (`d.a`, `d["a"]`, `d[0]`), folding
    /// consecutive steps into one [`ScalarFunction::DynamicGet`] so a value
    /// is parsed once per row however deep the path goes.
    fn bind_dynamic_step(&mut self, base: BoundExpr, key: BoundExpr, expr: &Expr) -> Option<BoundExpr> {
        if base.ty != KqlType::Dynamic {
            self.report(
                Diagnostic::semantic(
                    "KQL2010",
                    expr.span,
                    format!("property access and indexing need a dynamic value, got {}", base.ty),
                )
                .with_hint("convert the value first with parse_json()"),
            );
            return None;
        }
        let args = match base.kind {
            ExprKind::Call { function: ScalarFunction::DynamicGet, mut args } => {
                args.push(key);
                args
            }
            kind => vec![BoundExpr { kind, ty: KqlType::Dynamic }, key],
        };
        Some(BoundExpr { kind: ExprKind::Call { function: ScalarFunction::DynamicGet, args }, ty: KqlType::Dynamic })
    }

    fn bind_name(&mut self, name: &str, expr: &Expr, input: &TableSchema) -> Option<BoundExpr> {
        if let Some(param) = self.param(name) {
            return Some(param);
        }
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
        if name == "typeof" {
            return self.bind_typeof(args, expr);
        }
        if name == "column_ifexists" && !self.functions.contains_key(name) {
            return self.bind_column_ifexists(args, expr, input);
        }
        if self.functions.contains_key(name) {
            return self.bind_user_call(name, args, expr, input);
        }
        if matches!(name, "row_number" | "prev" | "next" | "row_cumsum") {
            return self.bind_window_call(name, args, expr, input);
        }
        if functions::multi_valued(name).is_some() {
            let message = format!("{name}() returns several values; name them with `extend (A, B, ...) = {name}(...)`");
            self.report(Diagnostic::semantic("KQL2011", expr.span, message));
            return None;
        }
        let Some(signature) = functions::scalar(name) else {
            if self.has_function(name) {
                return self.bind_user_call(name, args, expr, input);
            }
            self.report(unknown_function(name, expr));
            return None;
        };
        if args.len() < signature.min_args || args.len() > signature.max_args {
            self.report(arity_error(name, signature.min_args, signature.max_args, args.len(), expr));
            return None;
        }
        let bound: Vec<_> = args.iter().map(|arg| self.bind_expr(arg, input)).collect();
        let bound = bound.into_iter().collect::<Option<Vec<_>>>()?;
        let function = signature.function;
        self.check_call(function, name, &bound, args, expr)?;
        let ty = match signature.returns {
            Returns::Type(ty) => ty,
            Returns::Arg(idx) => bound[idx].ty,
            Returns::Special => special_return_type(function, &bound),
        };
        Some(BoundExpr { kind: ExprKind::Call { function, args: bound }, ty })
    }

    /// `toscalar(tabular)`: the value of the first column in the first row.
    fn bind_to_scalar(&mut self, tabular: &watchpost_kql_syntax::ast::TabularExpr, expr: &Expr) -> Option<BoundExpr> {
        let bound = self.bind_tabular(tabular)?;
        let Some(first) = bound.schema.columns.first() else {
            self.report(Diagnostic::semantic(
                "KQL2011",
                expr.span,
                "toscalar() needs a query with at least one column",
            ));
            return None;
        };
        let ty = first.kql_type;
        Some(BoundExpr { kind: ExprKind::ScalarSubquery(Box::new(bound)), ty })
    }

    /// Whether `name`, where a value is expected, is a table or a tabular
    /// `let` rather than a parameter, column or scalar `let`.
    fn names_tabular(&self, name: &str, input: &TableSchema) -> bool {
        self.param(name).is_none()
            && input.column(name).is_none()
            && !self.scalars.contains_key(name)
            && (self.tabulars.contains_key(name) || self.catalog.table(name).is_some())
    }

    /// `value in (query)`: membership in the first column of the query.
    fn bind_in_tabular(
        &mut self,
        op: ListOp,
        value: &Expr,
        tabular: &watchpost_kql_syntax::ast::TabularExpr,
        expr: &Expr,
        input: &TableSchema,
    ) -> Option<BoundExpr> {
        let value = self.bind_expr(value, input);
        let bound = self.bind_tabular(tabular);
        let (value, bound) = (value?, bound?);
        let negated = match op {
            ListOp::In => false,
            ListOp::NotIn => true,
            _ => {
                let message =
                    format!("`{}` with a query on the right is not supported yet; use `in` or `!in`", op.as_str());
                self.report(Diagnostic::semantic("KQL3001", expr.span, message));
                return None;
            }
        };
        let Some(first) = bound.schema.columns.first() else {
            self.report(Diagnostic::semantic("KQL2011", expr.span, "the query after `in` has no columns"));
            return None;
        };
        if !comparable(value.ty, first.kql_type) {
            self.report(type_mismatch(op.as_str(), value.ty, first.kql_type, expr));
            return None;
        }
        let kind = ExprKind::InSubquery { negated, expr: Box::new(value), tabular: Box::new(bound) };
        Some(BoundExpr { kind, ty: KqlType::Bool })
    }

    /// `column_ifexists(name, default)`: the column called `name` when the
    /// input has it, else `default`; decided here, from the schema.
    fn bind_column_ifexists(&mut self, args: &[Expr], expr: &Expr, input: &TableSchema) -> Option<BoundExpr> {
        let [name, default] = args else {
            self.report(arity_error("column_ifexists", 2, 2, args.len(), expr));
            return None;
        };
        let Ast::Literal(Literal::String(column_name)) = &name.kind else {
            let message = "column_ifexists() expects the column name as a string constant";
            self.report(Diagnostic::semantic("KQL2009", name.span, message));
            return None;
        };
        match input.column(column_name) {
            Some(column) => Some(BoundExpr { kind: ExprKind::Column(column_name.clone()), ty: column.kql_type }),
            None => self.bind_expr(default, input),
        }
    }

    /// `typeof(T)`, only meaningful as the type argument of `extract`:
    /// binds to the type's name as a string literal.
    fn bind_typeof(&mut self, args: &[Expr], expr: &Expr) -> Option<BoundExpr> {
        let type_name = match args {
            [Expr { kind: Ast::Name(ident), .. }] => KqlType::from_name(&ident.name),
            _ => None,
        };
        let Some(ty) = type_name else {
            self.report(Diagnostic::semantic("KQL2004", expr.span, "typeof() expects a type name, as in typeof(long)"));
            return None;
        };
        Some(BoundExpr { kind: ExprKind::Literal(Value::String(ty.name().to_string())), ty: KqlType::String })
    }

    /// The argument rules a signature's arity cannot express.
    fn check_call(
        &mut self,
        function: ScalarFunction,
        name: &str,
        bound: &[BoundExpr],
        args: &[Expr],
        expr: &Expr,
    ) -> Option<()> {
        let types: Vec<KqlType> = bound.iter().map(|arg| arg.ty).collect();
        let problem = match function {
            ScalarFunction::Ago if types[0] != KqlType::Timespan => Some(
                Diagnostic::semantic("KQL2004", args[0].span, format!("ago() expects a timespan, got {}", types[0]))
                    .with_hint("write a timespan literal such as 1h or 7d"),
            ),
            ScalarFunction::Case if bound.len().is_multiple_of(2) => Some(
                Diagnostic::semantic(
                    "KQL2007",
                    expr.span,
                    "case() expects pairs of predicate and value, then an else value",
                )
                .with_hint("write case(predicate1, value1, predicate2, value2, ..., else_value)"),
            ),
            ScalarFunction::Case | ScalarFunction::Iff => {
                let predicates = if function == ScalarFunction::Iff { 1 } else { bound.len() - 1 };
                let values: Vec<usize> = (0..bound.len()).filter(|idx| *idx >= predicates || idx % 2 == 1).collect();
                let first = types[values[0]];
                let mismatch = values.iter().find(|idx| !same_family(first, types[**idx]));
                mismatch.map(|idx| {
                    Diagnostic::semantic(
                        "KQL2006",
                        args[*idx].span,
                        format!("{name}(): all results must have the same type, got {first} and {}", types[*idx]),
                    )
                })
            }
            ScalarFunction::Coalesce | ScalarFunction::MaxOf | ScalarFunction::MinOf => {
                let first = types[0];
                let mismatch = (1..bound.len()).find(|idx| !same_family(first, types[*idx]));
                mismatch.map(|idx| {
                    Diagnostic::semantic(
                        "KQL2006",
                        args[idx].span,
                        format!("{name}(): all arguments must have the same type, got {first} and {}", types[idx]),
                    )
                })
            }
            ScalarFunction::BagPack if !bound.len().is_multiple_of(2) => Some(Diagnostic::semantic(
                "KQL2007",
                expr.span,
                format!("{name}() expects pairs of key and value, got {} argument(s)", bound.len()),
            )),
            ScalarFunction::Extract if bound.len() == 4 && !is_type_literal(&bound[3]) => Some(Diagnostic::semantic(
                "KQL2004",
                args[3].span,
                "extract() expects typeof(T) as its fourth argument",
            )),
            _ => None,
        };
        match problem {
            Some(diagnostic) => {
                self.report(diagnostic);
                None
            }
            None => Some(()),
        }
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

/// Replaces each dynamic array literal in an `in (...)` list by its
/// elements, so `x in (dynamic([1, 2]))` tests `x in (1, 2)`.
fn expand_dynamic_arrays(list: Vec<BoundExpr>) -> Vec<BoundExpr> {
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let ExprKind::Literal(Value::Dynamic(text)) = &item.kind else {
            out.push(item);
            continue;
        };
        let Some(elements) = json_array_literals(text) else {
            out.push(item);
            continue;
        };
        out.extend(elements);
    }
    out
}

/// The elements of a JSON array of scalars as typed literals; `None` when
/// `text` is not such an array.
fn json_array_literals(text: &str) -> Option<Vec<BoundExpr>> {
    let trimmed = text.trim();
    let inner = trimmed.strip_prefix('[')?.strip_suffix(']')?.trim();
    if inner.is_empty() {
        return Some(Vec::new());
    }
    let (tokens, diagnostics) = watchpost_kql_syntax::tokenize(inner);
    if !diagnostics.is_empty() {
        return None;
    }
    let mut elements = Vec::new();
    let mut negative = false;
    for token in tokens {
        use watchpost_kql_syntax::lexer::TokenKind;
        match token.kind {
            TokenKind::Comma | TokenKind::Eof => {}
            TokenKind::Minus => negative = true,
            TokenKind::Literal(literal) => {
                let (value, ty) = literal_value(&literal);
                let value = match (value, negative) {
                    (Value::Long(v), true) => Value::Long(-v),
                    (Value::Real(v), true) => Value::Real(-v),
                    (value, _) => value,
                };
                negative = false;
                elements.push(BoundExpr { kind: ExprKind::Literal(value), ty });
            }
            TokenKind::Ident => match token.span.text(inner) {
                "true" => elements.push(BoundExpr { kind: ExprKind::Literal(Value::Bool(true)), ty: KqlType::Bool }),
                "false" => elements.push(BoundExpr { kind: ExprKind::Literal(Value::Bool(false)), ty: KqlType::Bool }),
                _ => return None,
            },
            _ => return None,
        }
    }
    Some(elements)
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

/// The return type of a [`Returns::Special`] function.
fn special_return_type(function: ScalarFunction, args: &[BoundExpr]) -> KqlType {
    match function {
        ScalarFunction::Extract => match args.get(3).map(|arg| &arg.kind) {
            Some(ExprKind::Literal(Value::String(name))) => KqlType::from_name(name).unwrap_or(KqlType::String),
            _ => KqlType::String,
        },
        // Mixed numeric arguments widen, as in arithmetic.
        _ => args.iter().map(|arg| arg.ty).reduce(|a, b| widest_numeric(a, b).unwrap_or(a)).unwrap_or(KqlType::Dynamic),
    }
}

fn widest_numeric(left: KqlType, right: KqlType) -> Option<KqlType> {
    (is_numeric(left) && is_numeric(right)).then(|| arithmetic_type(BinaryOp::Add, left, right)).flatten()
}

/// Whether values of the two types can share one result column.
fn same_family(left: KqlType, right: KqlType) -> bool {
    left == right || left == KqlType::Dynamic || right == KqlType::Dynamic || (is_numeric(left) && is_numeric(right))
}

fn is_type_literal(arg: &BoundExpr) -> bool {
    matches!(&arg.kind, ExprKind::Literal(Value::String(name)) if KqlType::from_name(name).is_some())
}

fn unknown_function(name: &str, expr: &Expr) -> Diagnostic {
    let message = if functions::aggregate(name).is_some() || functions::is_special_aggregate(name) {
        format!("aggregate function '{name}' can only be used in summarize")
    } else {
        format!("Unknown function: '{name}'")
    };
    let diagnostic = Diagnostic::semantic("KQL2003", expr.span, message);
    match closest(name, functions::all_names()) {
        Some(similar) if functions::aggregate(name).is_none() => {
            diagnostic.with_hint(format!("did you mean '{similar}'?"))
        }
        _ => diagnostic,
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
