use super::*;
use crate::calendar::{TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MILLISECOND, TICKS_PER_MINUTE, TICKS_PER_SECOND};

/// Returns the kinds of `text`'s tokens without the final `Eof`, asserting
/// that lexing reported nothing.
fn kinds(text: &str) -> Vec<TokenKind> {
    let (tokens, diagnostics) = tokenize(text);
    assert!(diagnostics.is_empty(), "{text}: {diagnostics:?}");
    let mut kinds: Vec<TokenKind> = tokens.into_iter().map(|token| token.kind).collect();
    assert_eq!(kinds.pop(), Some(TokenKind::Eof));
    kinds
}

fn literal(text: &str) -> Literal {
    match kinds(text).as_slice() {
        [TokenKind::Literal(literal)] => literal.clone(),
        other => panic!("{text}: expected one literal, got {other:?}"),
    }
}

fn first_error(text: &str) -> String {
    let (_, diagnostics) = tokenize(text);
    diagnostics.first().map(|diagnostic| diagnostic.message.clone()).unwrap_or_default()
}

#[test]
fn lexes_timespans_in_every_unit() {
    let cases = [
        ("1d", TICKS_PER_DAY),
        ("2h", 2 * TICKS_PER_HOUR),
        ("30m", 30 * TICKS_PER_MINUTE),
        ("3min", 3 * TICKS_PER_MINUTE),
        ("2minutes", 2 * TICKS_PER_MINUTE),
        ("10s", 10 * TICKS_PER_SECOND),
        ("2sec", 2 * TICKS_PER_SECOND),
        ("1second", TICKS_PER_SECOND),
        ("100ms", 100 * TICKS_PER_MILLISECOND),
        ("5milliseconds", 5 * TICKS_PER_MILLISECOND),
        ("1microsecond", 10),
        ("5tick", 5),
        ("7ticks", 7),
        ("1.5h", 90 * TICKS_PER_MINUTE),
        ("0.5d", 12 * TICKS_PER_HOUR),
    ];
    for (text, ticks) in cases {
        assert_eq!(literal(text), Literal::Timespan(ticks), "{text}");
    }
    assert!(first_error("3weeks").contains("`weeks` is not a timespan unit"));
}

#[test]
fn lexes_numbers() {
    assert_eq!(literal("42"), Literal::Long(42));
    assert_eq!(literal("0x1F"), Literal::Long(31));
    assert_eq!(literal("1.5"), Literal::Real(1.5));
    assert_eq!(literal("2."), Literal::Real(2.0));
    assert_eq!(literal("1e3"), Literal::Real(1000.0));
    assert_eq!(literal("2.5E-1"), Literal::Real(0.25));
    let range = kinds("1..10");
    assert_eq!(range, [TokenKind::Literal(Literal::Long(1)), TokenKind::DotDot, TokenKind::Literal(Literal::Long(10))]);
    assert!(first_error("99999999999999999999").contains("out of range"));
}

#[test]
fn lexes_strings_with_escapes() {
    assert_eq!(literal(r#""a\"b\\c\n\t""#), Literal::String("a\"b\\c\n\t".to_string()));
    assert_eq!(literal(r"'it\'s'"), Literal::String("it's".to_string()));
    assert_eq!(literal(r#"'say "hi"'"#), Literal::String("say \"hi\"".to_string()));
    assert_eq!(literal(r#"@"C:\Temp\""x""""#), Literal::String(r#"C:\Temp\"x""#.to_string()));
    assert_eq!(literal(r"@'it''s'"), Literal::String("it's".to_string()));
    assert_eq!(literal(r#"h"secret""#), Literal::String("secret".to_string()));
    assert_eq!(literal(r#"h@"c:\s""#), Literal::String(r"c:\s".to_string()));
    assert_eq!(literal("\"héllo ✓\""), Literal::String("héllo ✓".to_string()));
    assert_eq!(first_error("\"abc\n"), "unterminated string literal");
    assert!(first_error(r#""a\qb""#).contains("unknown escape"));
}

#[test]
fn lexes_datetimes() {
    let midnight = 19_723 * TICKS_PER_DAY;
    assert_eq!(literal("datetime(2024-01-01)"), Literal::Datetime(midnight));
    assert_eq!(literal("datetime(2024-01-01T10:00:00Z)"), Literal::Datetime(midnight + 10 * TICKS_PER_HOUR));
    let with_millis = midnight + 10 * TICKS_PER_HOUR + 123 * TICKS_PER_MILLISECOND;
    assert_eq!(literal("datetime(2024-01-01 10:00:00.123)"), Literal::Datetime(with_millis));
    assert_eq!(literal("datetime( 1970-01-01 )"), Literal::Datetime(0));
    assert_eq!(literal("datetime(null)"), Literal::Null(Some("datetime".to_string())));
    assert!(first_error("datetime(2024-02-30)").contains("out of range"));
    assert!(first_error("datetime(2024-01-01").contains("unterminated"));
}

#[test]
fn lexes_other_raw_literals() {
    assert_eq!(
        literal("time(1.02:03:04)"),
        Literal::Timespan(TICKS_PER_DAY + 2 * TICKS_PER_HOUR + 3 * TICKS_PER_MINUTE + 4 * TICKS_PER_SECOND)
    );
    assert_eq!(literal("timespan(2d)"), Literal::Timespan(2 * TICKS_PER_DAY));
    let guid = "74BE27DE-1e4e-49d9-b579-fe0b331d3642";
    assert_eq!(literal(&format!("guid({guid})")), Literal::Guid(guid.to_ascii_lowercase()));
    assert_eq!(
        literal(r#"dynamic({"a": [1, ")"], "b": {}})"#),
        Literal::Dynamic(r#"{"a": [1, ")"], "b": {}}"#.to_string())
    );
    assert_eq!(literal("dynamic(null)"), Literal::Null(None));
    assert!(first_error("guid(1234)").contains("invalid guid"));
}

#[test]
fn lexes_dashed_words_only_after_a_pipe() {
    let (tokens, _) = tokenize("T | project-away a-b");
    let texts: Vec<&str> = tokens.iter().map(|token| token.span.text("T | project-away a-b")).collect();
    assert_eq!(texts, ["T", "|", "project-away", "a", "-", "b", ""]);
}

#[test]
fn lexes_operators_and_skips_comments() {
    let kinds = kinds("a !has b // note\n!in~ =~ !~ <= != ..");
    let expected = [
        TokenKind::Ident,
        TokenKind::BangWord,
        TokenKind::Ident,
        TokenKind::BangWord,
        TokenKind::Tilde,
        TokenKind::EqTilde,
        TokenKind::NotTilde,
        TokenKind::Le,
        TokenKind::NotEq,
        TokenKind::DotDot,
    ];
    assert_eq!(kinds, expected);
}
