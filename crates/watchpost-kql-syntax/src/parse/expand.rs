//! `mv-expand` and `mv-apply`: the operators that turn the elements of
//! dynamic arrays and bags into rows.

use super::Parser;
use crate::ast::{Ident, MvExpand, MvExpandItem, OperatorKind};
use crate::lexer::TokenKind;

/// The `name=value` parameters `mv-expand` and `mv-apply` accept before
/// their columns.
const EXPAND_PARAMS: [&str; 3] = ["bagexpansion", "kind", "with_itemindex"];

impl Parser<'_> {
    /// Parses the rest of `mv-expand`.
    pub(super) fn mv_expand(&mut self) -> Option<OperatorKind> {
        Some(OperatorKind::MvExpand(self.expand_clause()?))
    }

    /// Parses the rest of `mv-apply`: the expansion, then
    /// `on (operator | operator ...)`.
    pub(super) fn mv_apply(&mut self) -> Option<OperatorKind> {
        let expand = self.expand_clause()?;
        self.expect_word("on")?;
        self.expect(&TokenKind::LParen, "`(` and the operators to apply")?;
        let mut subquery = Vec::new();
        loop {
            let at = self.peek().span;
            subquery.push(self.operator(at)?);
            if !self.eat(&TokenKind::Pipe) {
                break;
            }
        }
        self.expect(&TokenKind::RParen, "`|` or `)` after the applied operators")?;
        Some(OperatorKind::MvApply { expand, subquery })
    }

    fn expand_clause(&mut self) -> Option<MvExpand> {
        let mut params = Vec::new();
        while self.nth(1).kind == TokenKind::Assign && EXPAND_PARAMS.iter().any(|param| self.at_word(param)) {
            let name = self.ident("a parameter name")?;
            self.bump();
            let value = self.ident("a parameter value")?;
            params.push((name, value));
        }
        let items = self.comma_list(Self::expand_item)?;
        let limit = if self.eat_word("limit") { Some(self.expr()?) } else { None };
        Some(MvExpand { params, items, limit })
    }

    fn expand_item(&mut self) -> Option<MvExpandItem> {
        let expr = self.named_expr()?;
        let to_type = if self.eat_word("to") { Some(self.typeof_name()?) } else { None };
        Some(MvExpandItem { expr, to_type })
    }

    /// Parses `typeof(name)` and returns the type name.
    pub(super) fn typeof_name(&mut self) -> Option<Ident> {
        self.expect_word("typeof")?;
        self.expect(&TokenKind::LParen, "`(` after `typeof`")?;
        let name = self.ident("a type name such as `long` or `string`")?;
        self.expect(&TokenKind::RParen, "`)` after the type name")?;
        Some(name)
    }
}
