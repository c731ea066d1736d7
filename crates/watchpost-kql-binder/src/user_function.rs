//! User-defined functions from `let f = (x: long, y: long = 2) { ... };`.
//!
//! A call is inlined: the arguments are bound in the caller's scope, then
//! the body is bound with each parameter name standing for its argument
//! (parameters shadow columns). Recursion is refused, as Kusto refuses it.
//! A function whose body is a query is called as a query source
//! (`f(10) | count`) and inlined the same way.

use std::collections::HashMap;

use watchpost_diagnostics::Diagnostic;
use watchpost_kql_syntax::ast::{Expr, ExprKind as Ast, FunctionBody, FunctionDef, TabularExpr, TabularSource};
use watchpost_schema::{KqlType, TableSchema};

use crate::bound::{BoundExpr, BoundTabular, ExprKind, ScalarFunction};
use crate::Binder;

impl Binder<'_> {
    /// Binds a call of the user function `name` (known to exist).
    pub(crate) fn bind_user_call(
        &mut self,
        name: &str,
        args: &[Expr],
        expr: &Expr,
        input: &TableSchema,
    ) -> Option<BoundExpr> {
        let function = self.functions.get(name).cloned()?;
        if !self.check_call_arity(&function, name, args, expr)? {
            return None;
        }
        let FunctionBody::Scalar(body) = &function.body else {
            let message =
                format!("function '{name}' returns a table; use it as a query source, as in `{name}(...) | count`");
            self.report(Diagnostic::semantic("KQL2011", expr.span, message));
            return None;
        };
        let scope = self.bind_params(&function, name, args, input)?;
        self.param_scopes.push(scope);
        self.calling.push(name.to_string());
        let bound = self.bind_expr(body, input);
        self.calling.pop();
        self.param_scopes.pop();
        bound
    }

    /// Binds `f(args)` used as a query source: a call of a tabular function.
    pub(crate) fn bind_function_source(&mut self, call: &Expr) -> Option<BoundTabular> {
        let Ast::Call { name, args } = &call.kind else {
            self.report(Diagnostic::semantic("KQL2011", call.span, "expected a function call"));
            return None;
        };
        let Some(function) = self.functions.get(&name.name).cloned() else {
            let message = format!("Failed to resolve table or function named '{}'", name.name);
            self.report(Diagnostic::semantic("KQL2001", name.span, message));
            return None;
        };
        let body = match &function.body {
            FunctionBody::Tabular(body) => body.clone(),
            // `{ T }` parses as a name; it is a table when `T` is one.
            FunctionBody::Scalar(Expr { kind: Ast::Name(table), span })
                if self.tabulars.contains_key(&table.name) || self.catalog.table(&table.name).is_some() =>
            {
                TabularExpr { source: TabularSource::Table(table.clone()), operators: Vec::new(), span: *span }
            }
            FunctionBody::Scalar(_) => {
                let message = format!("function '{}' returns a scalar, not a table", name.name);
                self.report(Diagnostic::semantic("KQL2011", call.span, message));
                return None;
            }
        };
        if !self.check_call_arity(&function, &name.name, args, call)? {
            return None;
        }
        let scope = self.bind_params(&function, &name.name, args, &TableSchema::default())?;
        self.param_scopes.push(scope);
        self.calling.push(name.name.clone());
        let bound = self.bind_tabular(&body);
        self.calling.pop();
        self.param_scopes.pop();
        bound
    }

    /// Reports a wrong number of arguments or a recursive call; `Some(true)`
    /// when the call may go ahead.
    fn check_call_arity(&mut self, function: &FunctionDef, name: &str, args: &[Expr], expr: &Expr) -> Option<bool> {
        let required = function.params.iter().take_while(|param| param.default.is_none()).count();
        if args.len() < required || args.len() > function.params.len() {
            let expected = if required == function.params.len() {
                format!("{required}")
            } else {
                format!("{required} to {}", function.params.len())
            };
            let message = format!("function '{name}' expects {expected} argument(s), got {}", args.len());
            self.report(Diagnostic::semantic("KQL2007", expr.span, message));
            return Some(false);
        }
        if self.calling.iter().any(|caller| caller == name) {
            let message = format!("function '{name}' calls itself; recursive functions are not allowed");
            self.report(Diagnostic::semantic("KQL2014", expr.span, message));
            return Some(false);
        }
        Some(true)
    }

    /// Binds each argument (or the default) and converts it to the declared
    /// parameter type.
    fn bind_params(
        &mut self,
        function: &FunctionDef,
        name: &str,
        args: &[Expr],
        input: &TableSchema,
    ) -> Option<HashMap<String, BoundExpr>> {
        let mut scope = HashMap::new();
        for (idx, param) in function.params.iter().enumerate() {
            let Some(ty) = KqlType::from_name(&param.type_name.name) else {
                let message = format!("unknown type '{}'", param.type_name.name);
                self.report(Diagnostic::semantic("KQL2008", param.type_name.span, message));
                return None;
            };
            let (bound, span) = match args.get(idx) {
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
            scope.insert(param.name.name.clone(), converted);
        }
        Some(scope)
    }

    /// The parameter named `name` in the innermost function being bound.
    pub(crate) fn param(&self, name: &str) -> Option<BoundExpr> {
        self.param_scopes.last().and_then(|scope| scope.get(name)).cloned()
    }
}

/// `arg` as a value of type `ty`: unchanged when the types agree, converted
/// between numbers and from dynamic, `None` otherwise.
fn convert_argument(arg: BoundExpr, ty: KqlType) -> Option<BoundExpr> {
    if arg.ty == ty {
        return Some(arg);
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
