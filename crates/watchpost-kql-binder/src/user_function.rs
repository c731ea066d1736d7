//! User-defined scalar functions from `let f = (x: long, y: long = 2) { ... };`.
//!
//! A call is inlined: the arguments are bound in the caller's scope, then
//! the body is bound with each parameter name standing for its argument
//! (parameters shadow columns). Recursion is refused, as Kusto refuses it.

use std::collections::HashMap;

use watchpost_diagnostics::Diagnostic;
use watchpost_kql_syntax::ast::{Expr, FunctionDef};
use watchpost_schema::{KqlType, TableSchema};

use crate::bound::{BoundExpr, ExprKind, ScalarFunction};
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
        let required = function.params.iter().take_while(|param| param.default.is_none()).count();
        if args.len() < required || args.len() > function.params.len() {
            let expected = if required == function.params.len() {
                format!("{required}")
            } else {
                format!("{required} to {}", function.params.len())
            };
            let message = format!("function '{name}' expects {expected} argument(s), got {}", args.len());
            self.report(Diagnostic::semantic("KQL2007", expr.span, message));
            return None;
        }
        if self.calling.iter().any(|caller| caller == name) {
            let message = format!("function '{name}' calls itself; recursive functions are not allowed");
            self.report(Diagnostic::semantic("KQL2014", expr.span, message));
            return None;
        }
        let scope = self.bind_params(&function, name, args, input)?;
        self.param_scopes.push(scope);
        self.calling.push(name.to_string());
        let body = self.bind_expr(&function.body, input);
        self.calling.pop();
        self.param_scopes.pop();
        body
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
