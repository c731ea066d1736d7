//! User-defined functions from `let f = (x: long, y: long = 2) { ... };`.
//!
//! A call is inlined: the arguments are bound in the caller's scope, then
//! the body is bound with each parameter name standing for its argument
//! (parameters shadow columns). Arguments are matched to parameters by
//! position, then by name (`f(limit = 10)`). A tabular parameter
//! (`T: (TimeGenerated: datetime)` or `T: (*)`) takes a table or tabular
//! `let` name and stands for it in the body. `let` statements at the start
//! of the body are bound after the parameters and seen only by the body.
//! Recursion is refused, as Kusto refuses it. A function whose body is a
//! query is called as a query source (`f(10) | count`) and inlined the same
//! way.

use std::collections::HashMap;

use watchpost_diagnostics::Diagnostic;
use watchpost_kql_syntax::ast::{
    ColumnDecl, Expr, ExprKind as Ast, FunctionBody, FunctionDef, Ident, ParamType, TabularExpr, TabularSource,
};
use watchpost_schema::{KqlType, TableSchema};

use crate::bound::{BoundExpr, BoundTabular, ExprKind, ScalarFunction, Value};
use crate::Binder;

/// The arguments of one call, bound: scalar parameters by name and the
/// tables passed to tabular parameters.
struct BoundArgs {
    scalars: HashMap<String, BoundExpr>,
    tables: Vec<(String, BoundTabular)>,
}

/// What entering a function body hid, restored when the body is bound.
struct SavedScope {
    scalars: HashMap<String, BoundExpr>,
    tabulars: HashMap<String, BoundTabular>,
    functions: HashMap<String, FunctionDef>,
}

impl Binder<'_> {
    /// Binds a call of the user function `name` (known to exist).
    pub(crate) fn bind_user_call(
        &mut self,
        name: &str,
        args: &[Expr],
        expr: &Expr,
        input: &TableSchema,
    ) -> Option<BoundExpr> {
        let function = self.lookup_function(name, expr.span)?;
        let FunctionBody::Scalar(body) = &function.body else {
            let message =
                format!("function '{name}' returns a table; use it as a query source, as in `{name}(...) | count`");
            self.report(Diagnostic::semantic("KQL2011", expr.span, message));
            return None;
        };
        let args = self.arrange_args(&function, name, args, expr)?;
        let bound_args = self.bind_params(&function, name, &args, input)?;
        let stored = self.is_stored(name);
        let bind_body = |binder: &mut Self| {
            let saved = binder.enter_function(&function, name, bound_args, stored);
            let bound = binder.bind_expr(body, input);
            binder.exit_function(saved);
            bound
        };
        if stored {
            return self.attributed_to_call(name, expr.span, bind_body);
        }
        bind_body(self)
    }

    /// Binds `f(args)` used as a query source: a call of a tabular function.
    pub(crate) fn bind_function_source(&mut self, call: &Expr) -> Option<BoundTabular> {
        let (name, args, function) =
            self.resolve_call(call, "expected a function call", "Failed to resolve table or function named")?;
        let args = self.arrange_args(&function, &name.name, args, call)?;
        let bound_args = self.bind_params(&function, &name.name, &args, &TableSchema::default())?;
        self.bind_tabular_call(&function, &name.name, call, bound_args)
    }

    /// The name, arguments and definition of the user function `call`
    /// calls, or a reported error: `not_a_call` when it is not a call,
    /// `unresolved` (followed by the name) when no such function exists.
    fn resolve_call<'e>(
        &mut self,
        call: &'e Expr,
        not_a_call: &str,
        unresolved: &str,
    ) -> Option<(&'e Ident, &'e [Expr], FunctionDef)> {
        let Ast::Call { name, args } = &call.kind else {
            self.report(Diagnostic::semantic("KQL2011", call.span, not_a_call));
            return None;
        };
        if !self.has_function(&name.name) {
            let message = format!("{unresolved} '{}'", name.name);
            self.report(Diagnostic::semantic("KQL2001", name.span, message));
            return None;
        }
        let Some(function) = self.lookup_function(&name.name, name.span) else {
            let message = format!("{unresolved} '{}'", name.name);
            self.report(Diagnostic::semantic("KQL2001", name.span, message));
            return None;
        };
        Some((name, args, function))
    }

    /// Binds the body of a tabular function with its arguments in scope.
    fn bind_tabular_call(
        &mut self,
        function: &FunctionDef,
        name: &str,
        call: &Expr,
        bound_args: BoundArgs,
    ) -> Option<BoundTabular> {
        let stored = self.is_stored(name);
        let bind_body = |binder: &mut Self| {
            let saved = binder.enter_function(function, name, bound_args, stored);
            let bound = match binder.tabular_body(function, name, call) {
                Some(body) => binder.bind_tabular(&body),
                None => None,
            };
            binder.exit_function(saved);
            bound
        };
        if stored {
            return self.attributed_to_call(name, call.span, bind_body);
        }
        bind_body(self)
    }

    /// Binds `input | invoke f(args)`: `f` is called with `input` as its
    /// first parameter, which must be tabular.
    pub(crate) fn bind_invoke(&mut self, input: BoundTabular, call: &Expr) -> Option<BoundTabular> {
        let (name, args, function) =
            self.resolve_call(call, "expected a function call after `invoke`", "Failed to resolve function named")?;
        let Some((first, rest)) = function.params.split_first() else {
            let message = format!("function '{}' takes no table, so it cannot be invoked", name.name);
            self.report(Diagnostic::semantic("KQL2007", call.span, message));
            return None;
        };
        let ParamType::Tabular { columns, .. } = &first.param_type else {
            let message = format!("function '{}' cannot be invoked: its first parameter is not a table", name.name);
            self.report(Diagnostic::semantic("KQL2006", call.span, message));
            return None;
        };
        self.check_table_columns(&name.name, &first.name.name, columns, &input, call)?;
        // The remaining parameters take the written arguments.
        let others = FunctionDef { params: rest.to_vec(), lets: Vec::new(), body: function.body.clone() };
        let args = self.arrange_args(&others, &name.name, args, call)?;
        let mut bound_args = self.bind_params(&others, &name.name, &args, &TableSchema::default())?;
        bound_args.tables.push((first.name.name.clone(), input));
        self.bind_tabular_call(&function, &name.name, call, bound_args)
    }

    /// The body of a function called as a query source, as a query.
    fn tabular_body(&mut self, function: &FunctionDef, name: &str, call: &Expr) -> Option<TabularExpr> {
        match &function.body {
            FunctionBody::Tabular(body) => Some(body.clone()),
            // `{ T }` parses as a name; it is a table when `T` is one.
            FunctionBody::Scalar(Expr { kind: Ast::Name(table), span })
                if self.tabulars.contains_key(&table.name)
                    || self.catalog.table(&table.name).is_some()
                    || self.has_function(&table.name) =>
            {
                Some(TabularExpr { source: TabularSource::Table(table.clone()), operators: Vec::new(), span: *span })
            }
            FunctionBody::Scalar(_) => {
                let message = format!("function '{name}' returns a scalar, not a table");
                self.report(Diagnostic::semantic("KQL2011", call.span, message));
                None
            }
        }
    }

    /// Puts the parameters and the body's `let` statements in scope. The
    /// body of a `stored` function sees none of the caller's `let`s.
    fn enter_function(&mut self, function: &FunctionDef, name: &str, args: BoundArgs, stored: bool) -> SavedScope {
        let saved = SavedScope {
            scalars: self.scalars.clone(),
            tabulars: self.tabulars.clone(),
            functions: self.functions.clone(),
        };
        if stored {
            self.scalars.clear();
            self.tabulars.clear();
            self.functions.clear();
        }
        self.tabulars.extend(args.tables);
        self.param_scopes.push(args.scalars);
        self.calling.push(name.to_string());
        for let_stmt in &function.lets {
            self.bind_let(let_stmt);
        }
        saved
    }

    fn exit_function(&mut self, saved: SavedScope) {
        self.calling.pop();
        self.param_scopes.pop();
        self.scalars = saved.scalars;
        self.tabulars = saved.tabulars;
        self.functions = saved.functions;
    }

    /// Matches the arguments to the parameters, first by position, then by
    /// name; reports unknown, repeated or missing arguments and recursion.
    fn arrange_args<'e>(
        &mut self,
        function: &FunctionDef,
        name: &str,
        args: &'e [Expr],
        call: &Expr,
    ) -> Option<Vec<Option<&'e Expr>>> {
        if self.calling.iter().any(|caller| caller == name) {
            let message = format!("function '{name}' calls itself; recursive functions are not allowed");
            self.report(Diagnostic::semantic("KQL2014", call.span, message));
            return None;
        }
        let mut arranged: Vec<Option<&Expr>> = vec![None; function.params.len()];
        let mut next_position = 0;
        for arg in args {
            let (idx, value) = match &arg.kind {
                Ast::NamedArg { name: param_name, value } => {
                    let Some(idx) = function.params.iter().position(|param| param.name.name == param_name.name) else {
                        let message = format!("function '{name}' has no parameter named '{}'", param_name.name);
                        self.report(Diagnostic::semantic("KQL2007", param_name.span, message));
                        return None;
                    };
                    (idx, value.as_ref())
                }
                _ => {
                    next_position += 1;
                    (next_position - 1, arg)
                }
            };
            if idx >= arranged.len() {
                self.report(arity_error(function, name, args.len(), call));
                return None;
            }
            if arranged[idx].is_some() {
                let message =
                    format!("function '{name}': parameter '{}' is given twice", function.params[idx].name.name);
                self.report(Diagnostic::semantic("KQL2007", arg.span, message));
                return None;
            }
            arranged[idx] = Some(value);
        }
        if let Some(missing) =
            function.params.iter().zip(&arranged).find(|(param, arg)| arg.is_none() && param.default.is_none())
        {
            if !args.iter().any(|arg| matches!(arg.kind, Ast::NamedArg { .. })) {
                self.report(arity_error(function, name, args.len(), call));
                return None;
            }
            let message = format!("function '{name}': no value for parameter '{}'", missing.0.name.name);
            self.report(Diagnostic::semantic("KQL2007", call.span, message).with_hint(expected_args(function)));
            return None;
        }
        Some(arranged)
    }

    /// Binds each argument (or the default): scalars are converted to the
    /// declared type, tables are checked for the declared columns.
    fn bind_params(
        &mut self,
        function: &FunctionDef,
        name: &str,
        args: &[Option<&Expr>],
        input: &TableSchema,
    ) -> Option<BoundArgs> {
        let mut bound_args = BoundArgs { scalars: HashMap::new(), tables: Vec::new() };
        for (param, arg) in function.params.iter().zip(args) {
            let type_name = match &param.param_type {
                ParamType::Scalar(type_name) => type_name,
                ParamType::Tabular { columns, .. } => {
                    let table = self.bind_table_arg(name, &param.name.name, columns, *arg)?;
                    bound_args.tables.push((param.name.name.clone(), table));
                    continue;
                }
            };
            let Some(ty) = KqlType::from_name(&type_name.name) else {
                let message = format!("unknown type '{}'", type_name.name);
                self.report(Diagnostic::semantic("KQL2008", type_name.span, message));
                return None;
            };
            let (bound, span) = match arg {
                Some(arg) => (self.bind_expr(arg, input)?, arg.span),
                None => {
                    let default = param.default.as_ref()?;
                    (self.bind_expr(default, &TableSchema::default())?, default.span)
                }
            };
            let Some(converted) = convert_argument(bound, ty) else {
                let message = format!("function '{name}': parameter '{}' expects a {ty}", param.name.name);
                self.report(Diagnostic::semantic("KQL2006", span, message));
                return None;
            };
            bound_args.scalars.insert(param.name.name.clone(), converted);
        }
        Some(bound_args)
    }

    /// Binds the table passed to a tabular parameter and checks that it has
    /// the declared columns.
    fn bind_table_arg(
        &mut self,
        name: &str,
        param: &str,
        columns: &[ColumnDecl],
        arg: Option<&Expr>,
    ) -> Option<BoundTabular> {
        let Some(arg) = arg else {
            let message = format!("function '{name}': parameter '{param}' needs a table argument");
            self.report(Diagnostic::semantic("KQL2007", Default::default(), message));
            return None;
        };
        let Some(table) = self.tabular_alias(arg) else {
            let message = format!("function '{name}': parameter '{param}' expects a table");
            self.report(Diagnostic::semantic("KQL2006", arg.span, message));
            return None;
        };
        self.check_table_columns(name, param, columns, &table, arg)?;
        Some(table)
    }

    /// Reports a declared column of a tabular parameter that `table` lacks.
    fn check_table_columns(
        &mut self,
        name: &str,
        param: &str,
        columns: &[ColumnDecl],
        table: &BoundTabular,
        at: &Expr,
    ) -> Option<()> {
        for column in columns {
            let declared = KqlType::from_name(&column.type_name.name);
            let found = table.schema.column(&column.name.name).map(|found| found.kql_type);
            if found.is_none() || (declared.is_some() && found != declared) {
                let message = format!(
                    "function '{name}': the table for '{param}' needs a column '{}' of type {}",
                    column.name.name, column.type_name.name
                );
                self.report(Diagnostic::semantic("KQL2006", at.span, message));
                return None;
            }
        }
        Some(())
    }

    /// The parameter named `name` in the innermost function being bound.
    pub(crate) fn param(&self, name: &str) -> Option<BoundExpr> {
        self.param_scopes.last().and_then(|scope| scope.get(name)).cloned()
    }
}

fn arity_error(function: &FunctionDef, name: &str, n_args: usize, call: &Expr) -> Diagnostic {
    let required = function.params.iter().take_while(|param| param.default.is_none()).count();
    let expected = if required == function.params.len() {
        format!("{required}")
    } else {
        format!("{required} to {}", function.params.len())
    };
    let message = format!("function '{name}' expects {expected} argument(s), got {n_args}");
    Diagnostic::semantic("KQL2007", call.span, message)
}

fn expected_args(function: &FunctionDef) -> String {
    let names: Vec<&str> = function.params.iter().map(|param| param.name.name.as_str()).collect();
    format!("the parameters are {}", names.join(", "))
}

/// `arg` as a value of type `ty`: unchanged when the types agree, converted
/// between numbers and from dynamic, `None` otherwise.
fn convert_argument(arg: BoundExpr, ty: KqlType) -> Option<BoundExpr> {
    if arg.ty == ty {
        return Some(arg);
    }
    if let Some(folded) = convert_literal(&arg, ty) {
        return Some(folded);
    }
    let numeric = |ty: KqlType| matches!(ty, KqlType::Int | KqlType::Long | KqlType::Real | KqlType::Decimal);
    if !(arg.ty == KqlType::Dynamic || (numeric(arg.ty) && numeric(ty))) {
        return None;
    }
    let function = match ty {
        KqlType::Long => ScalarFunction::ToLong,
        KqlType::Int => ScalarFunction::ToInt,
        KqlType::Real | KqlType::Decimal => ScalarFunction::ToReal,
        KqlType::String => ScalarFunction::ToString,
        KqlType::Bool => ScalarFunction::ToBool,
        KqlType::Datetime => ScalarFunction::ToDatetime,
        KqlType::Timespan => ScalarFunction::ToTimespan,
        KqlType::Dynamic | KqlType::Guid => return None,
    };
    Some(BoundExpr { kind: ExprKind::Call { function, args: vec![arg] }, ty })
}

/// A numeric literal converted to another numeric type at bind time, so a
/// constant argument stays a constant (`take n` with `n: int` given `25`).
fn convert_literal(arg: &BoundExpr, ty: KqlType) -> Option<BoundExpr> {
    let ExprKind::Literal(value) = &arg.kind else { return None };
    let value = match (value, ty) {
        (Value::Long(n), KqlType::Int) => Value::Int(i32::try_from(*n).ok()?),
        (Value::Int(n), KqlType::Long) => Value::Long(i64::from(*n)),
        (Value::Long(n), KqlType::Real) => Value::Real(*n as f64),
        (Value::Int(n), KqlType::Real) => Value::Real(f64::from(*n)),
        _ => return None,
    };
    Some(BoundExpr { kind: ExprKind::Literal(value), ty })
}
