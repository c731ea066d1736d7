//! IPv4 addresses found in free text: `has_ipv4`, `has_ipv4_prefix`,
//! `has_any_ipv4` and `has_any_ipv4_prefix`. An address in the text counts
//! only when non-alphanumeric characters delimit it and it is a valid
//! dotted quad (`54127.0.0.1` and `127.0.0.256` are not addresses).

use std::net::Ipv4Addr;

use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;
use serde_json::Value as Json;
use watchpost_schema::KqlType;

use super::kernel::{bools, json_at, text_at, Invocation};

/// What an argument asks for: one address, or addresses starting with a
/// prefix of whole octets ending in a dot (`10.`, `192.168.`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    Address(Ipv4Addr),
    Prefix(Vec<u8>),
}

impl Wanted {
    fn matches(&self, address: Ipv4Addr) -> bool {
        match self {
            Wanted::Address(wanted) => *wanted == address,
            Wanted::Prefix(octets) => address.octets().starts_with(octets),
        }
    }
}

/// `has_ipv4(text, address)`.
pub(crate) fn has_ipv4(call: &Invocation<'_>) -> Result<ArrayRef> {
    search(call, false)
}

/// `has_ipv4_prefix(text, prefix)`.
pub(crate) fn has_ipv4_prefix(call: &Invocation<'_>) -> Result<ArrayRef> {
    search(call, true)
}

/// `has_any_ipv4(text, address, ...)`; the addresses may come as one array.
pub(crate) fn has_any_ipv4(call: &Invocation<'_>) -> Result<ArrayRef> {
    search(call, false)
}

/// `has_any_ipv4_prefix(text, prefix, ...)`; the prefixes may come as one array.
pub(crate) fn has_any_ipv4_prefix(call: &Invocation<'_>) -> Result<ArrayRef> {
    search(call, true)
}

fn search(call: &Invocation<'_>, prefixes: bool) -> Result<ArrayRef> {
    Ok(bools((0..call.n_rows).map(|row| {
        let wanted = wanted_at(call, row, prefixes);
        let text = text_at(&call.args[0], row).unwrap_or_default();
        Some(!wanted.is_empty() && addresses(text).any(|address| wanted.iter().any(|want| want.matches(address))))
    })))
}

/// The valid addresses or prefixes given in arguments 1.. of `row`; invalid
/// ones are skipped, so they match nothing.
fn wanted_at(call: &Invocation<'_>, row: usize, prefixes: bool) -> Vec<Wanted> {
    let mut texts = Vec::new();
    for (array, kql_type) in call.args.iter().zip(call.arg_types).skip(1) {
        match json_at(array, *kql_type, row) {
            Json::String(text) => texts.push(text),
            Json::Array(items) if *kql_type == KqlType::Dynamic => {
                texts.extend(items.into_iter().filter_map(|item| item.as_str().map(str::to_string)));
            }
            _ => {}
        }
    }
    texts.iter().filter_map(|text| parse_wanted(text.trim(), prefixes)).collect()
}

fn parse_wanted(text: &str, prefixes: bool) -> Option<Wanted> {
    if let Ok(address) = text.parse::<Ipv4Addr>() {
        return Some(Wanted::Address(address));
    }
    let body = text.strip_suffix('.').filter(|_| prefixes)?;
    let octets: Option<Vec<u8>> = body.split('.').map(parse_octet).collect();
    octets.filter(|octets| (1..4).contains(&octets.len())).map(Wanted::Prefix)
}

fn parse_octet(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The addresses in `text`: runs of letters, digits and dots, trimmed of
/// dots at either end, that are exactly a dotted quad.
fn addresses(text: &str) -> impl Iterator<Item = Ipv4Addr> + '_ {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).map(|run| run.trim_matches('.')).filter_map(|run| {
        let octets: Option<Vec<u8>> = run.split('.').map(parse_octet).collect();
        match octets?.as_slice() {
            [a, b, c, d] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_delimited_valid_addresses() {
        let found: Vec<Ipv4Addr> =
            addresses("from: 192.168.1.1, 10.1.1.115 and x54127.0.0.1 127.0.0.256 1.2.3.4.").collect();
        assert_eq!(found, vec![Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(10, 1, 1, 115), Ipv4Addr::new(1, 2, 3, 4)]);
    }

    #[test]
    fn prefixes_need_a_trailing_dot() {
        assert_eq!(parse_wanted("127.0.", true), Some(Wanted::Prefix(vec![127, 0])));
        assert_eq!(parse_wanted("127.0", true), None);
        assert_eq!(parse_wanted("127.0.0.1", true), Some(Wanted::Address(Ipv4Addr::new(127, 0, 0, 1))));
        assert_eq!(parse_wanted("127.", false), None);
    }
}
