//! The extension part of a CEF record (`k1=v 1 k2=v2`), shared by the
//! syslog pipeline's CEF decoder (rows of `CommonSecurityLog`) and the KQL
//! function `parse_cef_dictionary`, so both split records the same way.

fn is_key(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'[' || b == b']')
}

/// Splits `k1=v 1 k2=v2` into key/value pairs, in order, where a value runs to the space before the next
/// `key=`; an `=` whose left side is not a key stays in the value.
pub fn parse_extension(text: &str) -> Vec<(String, String)> {
    // Positions of unescaped '=' that start a new pair: preceded by a
    // space-delimited key.
    let bytes = text.as_bytes();
    let mut starts = Vec::new(); // (key_start, eq_index)
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 1,
            b'=' => {
                let key_start = text[..index].rfind(' ').map_or(0, |s| s + 1);
                if is_key(&text[key_start..index]) {
                    starts.push((key_start, index));
                }
            }
            _ => {}
        }
        index += 1;
    }
    let mut pairs = Vec::with_capacity(starts.len());
    for (n, &(key_start, eq)) in starts.iter().enumerate() {
        let value_end = starts.get(n + 1).map_or(text.len(), |&(next_key, _)| next_key);
        let key = text[key_start..eq].to_string();
        let value = unescape_value(text[eq + 1..value_end].trim_end_matches(' '));
        pairs.push((key, value));
    }
    pairs
}

fn unescape_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('=') => out.push('='),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_run_to_the_next_key_and_escapes_are_undone() {
        let pairs = parse_extension(r"src=10.0.0.1 msg=two words a\=b end\\ cs1Label=x=y bad key=v");
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("src", "10.0.0.1"), ("msg", r"two words a=b end\"), ("cs1Label", "x=y bad"), ("key", "v")]);
        assert!(parse_extension("no pairs here").is_empty());
    }
}
