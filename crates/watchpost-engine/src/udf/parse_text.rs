//! `parse_url` and `parse_path`: split a URL or a file path into the
//! property bag Kusto documents; `parse_cef_dictionary`, the DCR transform
//! function, splits a CEF extension into one.

use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;
use serde_json::{json, Map, Value as Json};

use super::kernel::{dynamics, text_at, Invocation};

/// `parse_url(url)`: Scheme, Host, Port, Path, Username, Password,
/// Query Parameters (a bag) and Fragment; absent parts are empty strings.
/// Text without a `scheme://` gives null.
pub(crate) fn parse_url(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(dynamics((0..call.n_rows).map(|row| url_parts(text_at(&call.args[0], row)?))))
}

fn url_parts(url: &str) -> Option<Json> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match rest.find('/') {
        Some(idx) => rest.split_at(idx),
        None => (rest, ""),
    };
    let (user_info, host_port) = match authority.rsplit_once('@') {
        Some((user_info, host_port)) => (user_info, host_port),
        None => ("", authority),
    };
    let (username, password) = user_info.split_once(':').unwrap_or((user_info, ""));
    let (host, port) = split_host_port(host_port);
    let mut parameters = Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        parameters.insert(percent_decode(key), Json::String(percent_decode(value)));
    }
    Some(json!({
        "Scheme": scheme,
        "Host": host,
        "Port": port,
        "Path": path,
        "Username": username,
        "Password": password,
        "Query Parameters": parameters,
        "Fragment": fragment,
    }))
}

fn split_host_port(host_port: &str) -> (&str, &str) {
    if host_port.starts_with('[') {
        // An IPv6 literal: the port follows the closing bracket.
        return match host_port.find("]:") {
            Some(idx) => (&host_port[..=idx], &host_port[idx + 2..]),
            None => (host_port, ""),
        };
    }
    host_port.rsplit_once(':').unwrap_or((host_port, ""))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        let hex =
            || std::str::from_utf8(bytes.get(idx + 1..idx + 3)?).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[idx], hex()) {
            (b'%', Some(byte)) => {
                out.push(byte);
                idx += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                idx += 1;
            }
            (byte, _) => {
                out.push(byte);
                idx += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `parse_cef_dictionary(extension)`: the `key=value` pairs of a CEF
/// record's extension as a bag of strings, split as the syslog pipeline
/// splits them for `CommonSecurityLog` (`watchpost_schema::cef`): a value
/// runs to the space before the next key, `\=`, `\\`, `\n` and `\r` are
/// undone, and a repeated key keeps its last value. Text without a pair
/// (an empty string too) gives an empty bag.
pub(crate) fn parse_cef_dictionary(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(dynamics((0..call.n_rows).map(|row| {
        let pairs = watchpost_schema::cef::parse_extension(text_at(&call.args[0], row)?);
        Some(Json::Object(pairs.into_iter().map(|(key, value)| (key, Json::String(value))).collect::<Map<_, _>>()))
    })))
}

/// `parse_path(path)`: Scheme, RootPath, DirectoryPath, DirectoryName,
/// Filename, Extension and AlternateDataStreamName of a Windows, UNC, Unix
/// or URL-style path.
pub(crate) fn parse_path(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(dynamics((0..call.n_rows).map(|row| Some(path_parts(text_at(&call.args[0], row)?)))))
}

fn path_parts(path: &str) -> Json {
    let (scheme, rest) = match path.split_once("://") {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => (scheme, rest),
        _ => ("", path),
    };
    let is_separator = |c: char| c == '\\' || c == '/';
    let root = root_of(rest);
    let (directory, file) = match rest.rfind(is_separator) {
        Some(idx) => (&rest[..idx], &rest[idx + 1..]),
        None => ("", rest),
    };
    let directory_name = directory.rsplit(is_separator).next().unwrap_or("");
    let (filename, stream) = match file.split_once(':') {
        Some((name, stream)) => (name, stream),
        None => (file, ""),
    };
    let extension = filename.rsplit_once('.').map_or("", |(_, extension)| extension);
    json!({
        "Scheme": scheme,
        "RootPath": root,
        "DirectoryPath": directory,
        "DirectoryName": if directory_name == root { "" } else { directory_name },
        "Filename": filename,
        "Extension": extension,
        "AlternateDataStreamName": stream,
    })
}

/// `C:` for a drive path, `\\server\share` for a UNC path, else empty.
fn root_of(path: &str) -> &str {
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return &path[..2];
    }
    if let Some(rest) = path.strip_prefix(r"\\") {
        let mut separators = rest.match_indices('\\').map(|(idx, _)| idx + 2);
        let _server_end = separators.next();
        return match separators.next() {
            Some(share_end) => &path[..share_end],
            None => path,
        };
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls_and_paths() {
        let url = url_parts("https://user:pw@example.com:8443/a/b?x=1&y=a%20b#frag").unwrap();
        assert_eq!(url["Host"], "example.com");
        assert_eq!(url["Port"], "8443");
        assert_eq!(url["Path"], "/a/b");
        assert_eq!(url["Query Parameters"]["y"], "a b");
        let path = path_parts(r"C:\Windows\System32\cmd.exe");
        assert_eq!(path["RootPath"], "C:");
        assert_eq!(path["DirectoryName"], "System32");
        assert_eq!(path["Extension"], "exe");
        assert_eq!(path_parts("/var/log/syslog")["DirectoryPath"], "/var/log");
    }
}
