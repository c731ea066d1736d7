//! The KQL front end's syntax layer: lexer, recursive-descent parser, the
//! syntax tree ([`ast`]) and a pretty printer.
//!
//! Invariants: the parser never fails and never panics. [`parse`] returns a
//! tree and the diagnostics found, recovering at `|` and `;` so one typo does
//! not hide the next. The crate depends on nothing but `watchpost-diagnostics`:
//! it knows no schemas, tables, types or engines.
//!
//! [`print()`] renders a tree in canonical form (one pipe operator per line)
//! that parses back to the same tree; [`dump`] renders it as an indented
//! node-per-line listing for golden tests.

pub mod ast;
mod calendar;
mod dump;
pub mod lexer;
mod parse;
mod print;

pub use dump::{dump, dump_without_spans};
pub use lexer::tokenize;
pub use parse::parse;
pub use print::print;
