//! IPv4 functions: addresses are parsed from dotted-quad text with an
//! optional `/prefix`; text that is not an address gives null.

use std::cmp::Ordering;
use std::net::Ipv4Addr;

use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;

use super::kernel::{bools, long_at, longs, text_at, Invocation};

/// An address and its prefix length (32 when none is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: u32,
    prefix: u32,
}

fn parse_network(text: &str) -> Option<Network> {
    let text = text.trim();
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, prefix.trim().parse::<u32>().ok().filter(|prefix| *prefix <= 32)?),
        None => (text, 32),
    };
    let address: Ipv4Addr = address.trim().parse().ok()?;
    Some(Network { address: u32::from(address), prefix })
}

fn mask(prefix: u32) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

fn network_at(call: &Invocation<'_>, idx: usize, row: usize) -> Option<Network> {
    parse_network(text_at(&call.args[idx], row)?)
}

/// `parse_ipv4(text)`: the address as a long, masked by its prefix.
pub(crate) fn parse_ipv4(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(longs((0..call.n_rows).map(|row| {
        let network = network_at(call, 0, row)?;
        Some(i64::from(network.address & mask(network.prefix)))
    })))
}

/// `ipv4_is_in_range(address, range)`.
pub(crate) fn ipv4_is_in_range(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(bools((0..call.n_rows).map(|row| {
        let (address, range) = (network_at(call, 0, row)?, network_at(call, 1, row)?);
        let mask = mask(range.prefix);
        Some(address.address & mask == range.address & mask)
    })))
}

/// `ipv4_is_private(address)`: inside 10.0.0.0/8, 172.16.0.0/12 or
/// 192.168.0.0/16 (RFC 1918).
pub(crate) fn ipv4_is_private(call: &Invocation<'_>) -> Result<ArrayRef> {
    const PRIVATE: [(u32, u32); 3] = [(0x0A00_0000, 8), (0xAC10_0000, 12), (0xC0A8_0000, 16)];
    Ok(bools((0..call.n_rows).map(|row| {
        let address = network_at(call, 0, row)?.address;
        Some(PRIVATE.iter().any(|(network, prefix)| address & mask(*prefix) == *network))
    })))
}

fn compare_at(call: &Invocation<'_>, row: usize) -> Option<Ordering> {
    let (left, right) = (network_at(call, 0, row)?, network_at(call, 1, row)?);
    let mut prefix = left.prefix.min(right.prefix);
    if let Some(array) = call.args.get(2) {
        prefix = prefix.min(u32::try_from(long_at(array, row)?).ok().filter(|p| *p <= 32)?);
    }
    let mask = mask(prefix);
    Some((left.address & mask).cmp(&(right.address & mask)))
}

/// `ipv4_compare(a, b [, prefix])`: -1, 0 or 1.
pub(crate) fn ipv4_compare(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(longs((0..call.n_rows).map(|row| compare_at(call, row).map(|order| order as i64))))
}

/// `ipv4_is_match(a, b [, prefix])`.
pub(crate) fn ipv4_is_match(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(bools((0..call.n_rows).map(|row| compare_at(call, row).map(Ordering::is_eq))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_with_prefixes() {
        assert_eq!(parse_network("10.1.0.0/16"), Some(Network { address: 0x0A01_0000, prefix: 16 }));
        assert_eq!(parse_network("1.2.3.4").map(|n| n.address), Some(16_909_060));
        assert_eq!(parse_network("1.2.3"), None);
        assert_eq!(parse_network("1.2.3.4/33"), None);
        assert_eq!(mask(24), 0xFFFF_FF00);
    }
}
