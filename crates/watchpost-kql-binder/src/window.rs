//! `serialize` and the window functions that need ordered rows
//! (`row_number()`, `prev()`, `next()`).
//!
//! A window call binds to [`ExprKind::Window`] only inside `extend`,
//! `project` and `serialize`; the operator then lifts every such call into a
//! [`TabularKind::Window`] under itself and refers to its result by a
//! generated column name, so lowering sees plain columns above the window.

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{BinaryOp, Expr, NamedExpr};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use crate::bound::{
    BoundExpr, BoundSortKey, BoundTabular, BoundWindow, ExprKind, ScalarFunction, TabularKind, Value, WindowFunction,
};
use crate::tabular::{column_ref, project, NamingStyle};
use crate::Binder;

impl Binder<'_> {
    /// Binds `items` over `input` the way `extend` does (new columns last,
    /// a redefined column moves to the end), lifting window calls.
    pub(crate) fn bind_extend(&mut self, input: BoundTabular, items: &[NamedExpr], span: Span) -> Option<BoundTabular> {
        let expanded = self.expand_multi_valued(items)?;
        let items = expanded.as_slice();
        let (input, bound) = self.bind_windowed_list(input, items, span)?;
        let mut all: Vec<_> = input
            .schema
            .columns
            .iter()
            .filter(|column| !is_window_column(&column.name))
            .filter(|column| !bound.iter().any(|(name, _)| *name == column.name))
            .map(|column| (column.name.clone(), column_ref(column)))
            .collect();
        all.extend(bound);
        Some(project(input, all))
    }

    /// Binds the columns of `project`, lifting window calls.
    pub(crate) fn bind_project(
        &mut self,
        input: BoundTabular,
        items: &[NamedExpr],
        span: Span,
    ) -> Option<BoundTabular> {
        let (input, bound) = self.bind_windowed_list(input, items, span)?;
        Some(project(input, bound))
    }

    /// `serialize [name = expr, ...]`.
    pub(crate) fn bind_serialize(
        &mut self,
        input: BoundTabular,
        items: &[NamedExpr],
        span: Span,
    ) -> Option<BoundTabular> {
        let schema = input.schema.clone();
        let serialized = BoundTabular { kind: TabularKind::Serialize { input: Box::new(input) }, schema };
        if items.is_empty() {
            return Some(serialized);
        }
        self.bind_extend(serialized, items, span)
    }

    /// Binds a window function call; `name` is one of `row_number`, `prev`
    /// and `next`.
    pub(crate) fn bind_window_call(
        &mut self,
        name: &str,
        args: &[Expr],
        expr: &Expr,
        input: &TableSchema,
    ) -> Option<BoundExpr> {
        if !self.window_allowed {
            let message = format!("{name}() can only be used in extend, project or serialize");
            self.report(Diagnostic::semantic("KQL2013", expr.span, message));
            return None;
        }
        let (function, min, max) = match name {
            "row_number" => (WindowFunction::RowNumber, 0, 2),
            "prev" => (WindowFunction::Prev, 1, 3),
            "row_cumsum" => (WindowFunction::RowCumsum, 1, 2),
            _ => (WindowFunction::Next, 1, 3),
        };
        if args.len() < min || args.len() > max {
            let message = format!("function '{name}' expects {min} to {max} argument(s), got {}", args.len());
            self.report(Diagnostic::semantic("KQL2007", expr.span, message));
            return None;
        }
        let bound: Vec<_> = args.iter().map(|arg| self.bind_expr(arg, input)).collect();
        let bound = bound.into_iter().collect::<Option<Vec<_>>>()?;
        let integer = |arg: &BoundExpr| matches!(arg.ty, KqlType::Int | KqlType::Long);
        let (ty, bad_arg) = match function {
            WindowFunction::RowNumber => (KqlType::Long, bound.first().filter(|arg| !integer(arg)).map(|_| 0)),
            WindowFunction::RowCumsum => match bound[0].ty {
                KqlType::Int | KqlType::Long => (KqlType::Long, None),
                KqlType::Real | KqlType::Decimal => (KqlType::Real, None),
                other => {
                    let message = format!("row_cumsum() expects a number, got {other}");
                    self.report(Diagnostic::semantic("KQL2004", args[0].span, message));
                    return None;
                }
            },
            WindowFunction::Prev | WindowFunction::Next => {
                (bound[0].ty, bound.get(1).filter(|arg| !integer(arg)).map(|_| 1))
            }
        };
        if let Some(idx) = bad_arg {
            let message = format!("{name}(): the {} must be an integer", if idx == 0 { "start" } else { "offset" });
            self.report(Diagnostic::semantic("KQL2004", args[idx].span, message));
            return None;
        }
        let restarts = matches!(function, WindowFunction::RowNumber | WindowFunction::RowCumsum);
        if let Some(restart) = bound.get(1).filter(|_| restarts) {
            if restart.ty != KqlType::Bool {
                let message = format!("{name}(): the restart argument must be a bool, got {}", restart.ty);
                self.report(Diagnostic::semantic("KQL2004", args[1].span, message));
                return None;
            }
        }
        if let Some(idx) = (1..bound.len()).find(|idx| !is_constant(&bound[*idx])) {
            if !restarts {
                let message = format!("{name}(): the offset and the default must be constants");
                self.report(Diagnostic::semantic("KQL2004", args[idx].span, message));
                return None;
            }
        }
        if let Some(default) = bound.get(2) {
            if !crate::expr::comparable(default.ty, ty) {
                let message = format!("{name}(): the default must be a {ty}, got {}", default.ty);
                self.report(Diagnostic::semantic("KQL2006", args[2].span, message));
                return None;
            }
        }
        Some(BoundExpr { kind: ExprKind::Window(BoundWindow { function, args: bound, ty }), ty })
    }

    /// Binds `items` (`Column1` naming) with window calls allowed, then lifts
    /// those calls into a window node over `input`.
    fn bind_windowed_list(
        &mut self,
        input: BoundTabular,
        items: &[NamedExpr],
        span: Span,
    ) -> Option<(BoundTabular, Vec<(String, BoundExpr)>)> {
        let was_allowed = std::mem::replace(&mut self.window_allowed, true);
        let bound = self.bind_named_list(items, &input.schema, NamingStyle::Column);
        self.window_allowed = was_allowed;
        let mut bound = bound?;
        let mut lifted = Lifted::default();
        for (_, expr) in &mut bound {
            self.lift_windows(expr, &mut lifted);
        }
        if lifted.windows.is_empty() && lifted.restarts.is_empty() {
            return Some((input, bound));
        }
        if !is_serialized(&input) {
            let message = "window functions such as row_number() and prev() need serialized input";
            let hint = "add `| serialize` (or `| sort by ...`) before this operator";
            self.report(Diagnostic::semantic("KQL2013", span, message).with_hint(hint));
            return None;
        }
        let mut order = serial_order(&input).unwrap_or_default();
        let mut windowed = input;
        if order.is_empty() && !lifted.restarts.is_empty() {
            // Rows in arrival order get numbers, so the per-group windows
            // below have an order to follow.
            let arrival = self.window_name();
            let number = BoundWindow { function: WindowFunction::RowNumber, args: Vec::new(), ty: KqlType::Long };
            windowed = window_node(windowed, vec![(arrival.clone(), number)], &[], Vec::new());
            let expr = BoundExpr { kind: ExprKind::Column(arrival), ty: KqlType::Long };
            order = vec![BoundSortKey { expr, descending: false, nulls_first: false }];
        }
        if !lifted.windows.is_empty() {
            windowed = window_node(windowed, lifted.windows, &order, Vec::new());
        }
        // A restarting window runs per group of rows, numbered by a running
        // count of the rows where the restart condition holds.
        for restart in lifted.restarts {
            let long = |value| BoundExpr { kind: ExprKind::Literal(Value::Long(value)), ty: KqlType::Long };
            let flag = BoundExpr {
                kind: ExprKind::Call { function: ScalarFunction::Iff, args: vec![restart.condition, long(1), long(0)] },
                ty: KqlType::Long,
            };
            let count = BoundWindow { function: WindowFunction::RowCumsum, args: vec![flag], ty: KqlType::Long };
            windowed = window_node(windowed, vec![(restart.group.clone(), count)], &order, Vec::new());
            let group = BoundExpr { kind: ExprKind::Column(restart.group), ty: KqlType::Long };
            windowed = window_node(windowed, vec![(restart.output, restart.window)], &order, vec![group]);
        }
        Some((windowed, bound))
    }

    fn window_name(&mut self) -> String {
        let name = format!("{WINDOW_PREFIX}{}", self.n_windows);
        self.n_windows += 1;
        name
    }

    /// Replaces every window call in `expr` by a reference to a new column
    /// and collects the calls.
    fn lift_windows(&mut self, expr: &mut BoundExpr, lifted: &mut Lifted) {
        match &mut expr.kind {
            ExprKind::Window(window) => {
                let mut window = window.clone();
                // `row_number(start, restart)` and `row_cumsum(x, restart)`.
                let restart = match window.function {
                    WindowFunction::RowNumber | WindowFunction::RowCumsum if window.args.len() == 2 => {
                        window.args.pop()
                    }
                    _ => None,
                };
                // `row_number(start)` counts from `start`: `row_number() + (start - 1)`.
                let start = match window.function {
                    WindowFunction::RowNumber => window.args.first().cloned(),
                    _ => None,
                };
                if start.is_some() {
                    window.args.clear();
                }
                let name = match restart {
                    Some(mut condition) => {
                        self.lift_windows(&mut condition, lifted);
                        let (group, output) = (self.window_name(), self.window_name());
                        lifted.restarts.push(Restart {
                            group,
                            output: output.clone(),
                            window: window.clone(),
                            condition,
                        });
                        output
                    }
                    // Equal calls share one window column (DataFusion cannot
                    // plan two identical window expressions side by side).
                    None => match lifted.windows.iter().find(|(_, existing)| *existing == window) {
                        Some((name, _)) => name.clone(),
                        None => {
                            let name = self.window_name();
                            lifted.windows.push((name.clone(), window.clone()));
                            name
                        }
                    },
                };
                let column = BoundExpr { kind: ExprKind::Column(name), ty: window.ty };
                *expr = match start {
                    None => column,
                    Some(start) => {
                        let one = BoundExpr { kind: ExprKind::Literal(Value::Long(1)), ty: KqlType::Long };
                        let offset = binary(BinaryOp::Sub, start, one);
                        binary(BinaryOp::Add, column, offset)
                    }
                };
            }
            ExprKind::Column(_) | ExprKind::Literal(_) | ExprKind::ScalarSubquery(_) => {}
            ExprKind::Not(inner) | ExprKind::Negate(inner) | ExprKind::InSubquery { expr: inner, .. } => {
                self.lift_windows(inner, lifted)
            }
            ExprKind::Binary { left, right, .. } => {
                self.lift_windows(left, lifted);
                self.lift_windows(right, lifted);
            }
            ExprKind::InList { expr, list, .. } => {
                self.lift_windows(expr, lifted);
                list.iter_mut().for_each(|item| self.lift_windows(item, lifted));
            }
            ExprKind::Between { expr, low, high, .. } => {
                self.lift_windows(expr, lifted);
                self.lift_windows(low, lifted);
                self.lift_windows(high, lifted);
            }
            ExprKind::Call { args, .. } => args.iter_mut().for_each(|arg| self.lift_windows(arg, lifted)),
        }
    }
}

/// The window calls of one operator: plain ones, computed together, and
/// restarting ones, each computed per group after them.
#[derive(Default)]
struct Lifted {
    windows: Vec<(String, BoundWindow)>,
    restarts: Vec<Restart>,
}

/// A window with a restart condition: `group` numbers the runs of rows
/// between restarts, `output` is the window computed within each run.
struct Restart {
    group: String,
    output: String,
    window: BoundWindow,
    condition: BoundExpr,
}

/// `input` followed by the window `columns`.
fn window_node(
    input: BoundTabular,
    columns: Vec<(String, BoundWindow)>,
    order: &[BoundSortKey],
    partition: Vec<BoundExpr>,
) -> BoundTabular {
    let mut schema = input.schema.clone();
    schema.columns.extend(columns.iter().map(|(name, window)| ColumnDef::new(name, window.ty)));
    let kind = TabularKind::Window { input: Box::new(input), columns, order: order.to_vec(), partition };
    BoundTabular { kind, schema }
}

fn is_constant(expr: &BoundExpr) -> bool {
    match &expr.kind {
        ExprKind::Literal(_) => true,
        ExprKind::Negate(inner) => matches!(inner.kind, ExprKind::Literal(_)),
        _ => false,
    }
}

fn binary(op: BinaryOp, left: BoundExpr, right: BoundExpr) -> BoundExpr {
    BoundExpr { kind: ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, ty: KqlType::Long }
}

/// Names of the lifted window columns start with this; no KQL name can.
const WINDOW_PREFIX: &str = "$window_";

fn is_window_column(name: &str) -> bool {
    name.starts_with(WINDOW_PREFIX)
}

/// The order of serialized rows as sort keys over the columns of
/// `tabular`: the keys of the `sort` that ordered them, followed through
/// the operators above it. `Some(vec![])` when the rows keep their arrival
/// order; `None` when a sort key cannot be expressed over these columns.
fn serial_order(tabular: &BoundTabular) -> Option<Vec<BoundSortKey>> {
    match &tabular.kind {
        TabularKind::Sort { keys, .. } => Some(keys.clone()),
        TabularKind::Serialize { input }
        | TabularKind::Filter { input, .. }
        | TabularKind::Limit { input, .. }
        | TabularKind::Window { input, .. }
        | TabularKind::MvExpand { input, .. } => serial_order(input),
        TabularKind::Project { input, columns } => {
            let keys = serial_order(input)?;
            keys.into_iter().map(|key| rename_through(key, columns)).collect()
        }
        _ => Some(Vec::new()),
    }
}

/// `key` over the output of a projection with `columns`: a sort on a
/// column that the projection keeps (perhaps renamed) follows it.
fn rename_through(key: BoundSortKey, columns: &[(String, BoundExpr)]) -> Option<BoundSortKey> {
    let ExprKind::Column(name) = &key.expr.kind else {
        return None;
    };
    let (output, expr) =
        columns.iter().find(|(_, expr)| matches!(&expr.kind, ExprKind::Column(source) if source == name))?;
    let expr = BoundExpr { kind: ExprKind::Column(output.clone()), ty: expr.ty };
    Some(BoundSortKey { expr, ..key })
}

/// Whether the rows of `tabular` are in a defined order: after `serialize`,
/// `sort`, `top` or `range`, kept by the operators that do not reorder rows.
pub(crate) fn is_serialized(tabular: &BoundTabular) -> bool {
    match &tabular.kind {
        TabularKind::Serialize { .. } | TabularKind::Sort { .. } | TabularKind::Range { .. } => true,
        TabularKind::Window { .. } => true,
        TabularKind::Project { input, .. }
        | TabularKind::Filter { input, .. }
        | TabularKind::Limit { input, .. }
        | TabularKind::MvExpand { input, .. } => is_serialized(input),
        _ => false,
    }
}
