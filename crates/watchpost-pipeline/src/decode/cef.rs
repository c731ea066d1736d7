//! CEF parsing (syslog-cef spec 7) and the `CommonSecurityLog` row (8).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value as Json};

use super::syslog::{rfc3339, Origin, SyslogMessage};
use watchpost_schema::cef::parse_extension;

/// A parsed CEF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cef {
    pub version: String,
    pub vendor: String,
    pub product: String,
    pub device_version: String,
    pub class_id: String,
    pub name: String,
    pub severity: String,
    /// Extension pairs in arrival order, values unescaped.
    pub extensions: Vec<(String, String)>,
}

/// Whether a message's content is CEF: `CEF:<digits>|` after spaces.
pub fn is_cef(message: &str) -> bool {
    let text = message.trim_start();
    let Some(rest) = text.strip_prefix("CEF:") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && rest.as_bytes().get(digits) == Some(&b'|')
}

/// Parses CEF text; `None` when it has fewer than seven header fields.
pub fn parse(message: &str) -> Option<Cef> {
    let text = message.trim_start().strip_prefix("CEF:")?;
    let mut fields = Vec::with_capacity(7);
    let mut current = String::new();
    let mut chars = text.char_indices();
    let mut extension_start = None;
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => match chars.clone().next() {
                Some((_, next @ ('|' | '\\'))) => {
                    current.push(next);
                    chars.next();
                }
                _ => current.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut current));
                if fields.len() == 7 {
                    extension_start = Some(index + 1);
                    break;
                }
            }
            _ => current.push(c),
        }
    }
    let extension_start = extension_start?;
    let mut fields = fields.into_iter();
    let mut next = || fields.next().unwrap_or_default();
    Some(Cef {
        version: next(),
        vendor: next(),
        product: next(),
        device_version: next(),
        class_id: next(),
        name: next(),
        severity: next(),
        extensions: parse_extension(&text[extension_start..]),
    })
}

/// The type of a column, as the `CommonSecurityLog` schema declares it: a
/// value that does not fit goes to `AdditionalExtensions` instead, so every
/// row converts to the table's columns.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// `int`: 32 bits.
    Int,
    /// `long`.
    Long,
    Real,
    /// `datetime`, sent as RFC 3339 text.
    Time,
}

/// Extension key → (column, type). Long dictionary names map to the same
/// columns as the short ones.
fn column_of(key: &str) -> Option<(String, Kind)> {
    use Kind::*;
    let key = match key {
        "sourceAddress" => "src",
        "destinationAddress" => "dst",
        "sourcePort" => "spt",
        "destinationPort" => "dpt",
        "sourceUserName" => "suser",
        "destinationUserName" => "duser",
        "deviceAction" => "act",
        "applicationProtocol" => "app",
        "transportProtocol" => "proto",
        "baseEventCount" => "cnt",
        "message" => "msg",
        "requestUrl" => "request",
        "receiptTime" => "rt",
        "startTime" => "start",
        "endTime" => "end",
        "deviceAddress" => "dvc",
        "deviceHostName" => "dvchost",
        "bytesIn" => "in",
        "bytesOut" => "out",
        "fileName" => "fname",
        "fileSize" => "fsize",
        "eventOutcome" => "outcome",
        "sourceHostName" => "shost",
        "destinationHostName" => "dhost",
        "sourceMacAddress" => "smac",
        "destinationMacAddress" => "dmac",
        "sourceUserId" => "suid",
        "destinationUserId" => "duid",
        "sourceProcessId" => "spid",
        "destinationProcessId" => "dpid",
        "deviceEventCategory" => "cat",
        other => other,
    };
    let (column, kind) = match key {
        "act" => ("DeviceAction", Str),
        "app" => ("ApplicationProtocol", Str),
        "cat" => ("DeviceEventCategory", Str),
        "cnt" => ("EventCount", Int),
        "destinationDnsDomain" => ("DestinationDnsDomain", Str),
        "destinationServiceName" => ("DestinationServiceName", Str),
        "destinationTranslatedAddress" => ("DestinationTranslatedAddress", Str),
        "destinationTranslatedPort" => ("DestinationTranslatedPort", Int),
        "deviceDirection" => ("CommunicationDirection", Str),
        "deviceDnsDomain" => ("DeviceDnsDomain", Str),
        "deviceExternalId" => ("DeviceExternalID", Str),
        "deviceFacility" => ("DeviceFacility", Str),
        "deviceInboundInterface" => ("DeviceInboundInterface", Str),
        "deviceNtDomain" => ("DeviceNtDomain", Str),
        "deviceOutboundInterface" => ("DeviceOutboundInterface", Str),
        "devicePayloadId" => ("DevicePayloadId", Str),
        "deviceProcessName" => ("ProcessName", Str),
        "deviceTranslatedAddress" => ("DeviceTranslatedAddress", Str),
        "dhost" => ("DestinationHostName", Str),
        "dmac" => ("DestinationMACAddress", Str),
        "dntdom" => ("DestinationNTDomain", Str),
        "dpid" => ("DestinationProcessId", Int),
        "dpriv" => ("DestinationUserPrivileges", Str),
        "dproc" => ("DestinationProcessName", Str),
        "dpt" => ("DestinationPort", Int),
        "dst" => ("DestinationIP", Str),
        "dtz" => ("DeviceTimeZone", Str),
        "duid" => ("DestinationUserID", Str),
        "duser" => ("DestinationUserName", Str),
        "dvc" => ("DeviceAddress", Str),
        "dvchost" => ("DeviceName", Str),
        "dvcmac" => ("DeviceMacAddress", Str),
        "dvcpid" => ("ProcessID", Int),
        "in" => ("ReceivedBytes", Long),
        "msg" => ("Message", Str),
        "fname" => ("FileName", Str),
        "out" => ("SentBytes", Long),
        "outcome" => ("EventOutcome", Str),
        "proto" => ("Protocol", Str),
        "reason" => ("Reason", Str),
        "request" => ("RequestURL", Str),
        "requestClientApplication" => ("RequestClientApplication", Str),
        "requestContext" => ("RequestContext", Str),
        "requestCookies" => ("RequestCookies", Str),
        "requestMethod" => ("RequestMethod", Str),
        "rt" => ("ReceiptTime", Str),
        "shost" => ("SourceHostName", Str),
        "smac" => ("SourceMACAddress", Str),
        "sntdom" => ("SourceNTDomain", Str),
        "sourceDnsDomain" => ("SourceDnsDomain", Str),
        "sourceServiceName" => ("SourceServiceName", Str),
        "sourceTranslatedAddress" => ("SourceTranslatedAddress", Str),
        "sourceTranslatedPort" => ("SourceTranslatedPort", Int),
        "spid" => ("SourceProcessId", Int),
        "spriv" => ("SourceUserPrivileges", Str),
        "sproc" => ("SourceProcessName", Str),
        "spt" => ("SourcePort", Int),
        "src" => ("SourceIP", Str),
        "suid" => ("SourceUserID", Str),
        "suser" => ("SourceUserName", Str),
        "type" => ("EventType", Int),
        "externalId" => ("ExternalID", Int),
        "fileCreateTime" => ("FileCreateTime", Str),
        "fileHash" => ("FileHash", Str),
        "fileId" => ("FileID", Str),
        "fileModificationTime" => ("FileModificationTime", Str),
        "filePath" => ("FilePath", Str),
        "filePermission" => ("FilePermission", Str),
        "fileType" => ("FileType", Str),
        "fsize" => ("FileSize", Int),
        "oldFileCreateTime" => ("OldFileCreateTime", Str),
        "oldFileHash" => ("OldFileHash", Str),
        "oldFileId" => ("OldFileID", Str),
        "oldFileModificationTime" => ("OldFileModificationTime", Str),
        "oldFileName" => ("OldFileName", Str),
        "oldFilePath" => ("OldFilePath", Str),
        "oldFilePermission" => ("OldFilePermission", Str),
        "oldFileSize" => ("OldFileSize", Int),
        "oldFileType" => ("OldFileType", Str),
        "start" => ("StartTime", Time),
        "end" => ("EndTime", Time),
        _ => return custom_column(key),
    };
    Some((column.to_string(), kind))
}

/// `cs1`…`cs6`, `cn1`…`cn3`, `cfp1`…`cfp4`, `c6a1`…`c6a4`,
/// `deviceCustomDate1`…2, `flexString1`…2, `flexNumber1`…2, `flexDate1`
/// and their `Label` keys.
fn custom_column(key: &str) -> Option<(String, Kind)> {
    const FAMILIES: [(&str, &str, u8, Kind); 8] = [
        ("cs", "DeviceCustomString", 6, Kind::Str),
        ("cn", "DeviceCustomNumber", 3, Kind::Int),
        ("cfp", "DeviceCustomFloatingPoint", 4, Kind::Real),
        ("c6a", "DeviceCustomIPv6Address", 4, Kind::Str),
        ("deviceCustomDate", "DeviceCustomDate", 2, Kind::Str),
        ("flexString", "FlexString", 2, Kind::Str),
        ("flexNumber", "FlexNumber", 2, Kind::Int),
        ("flexDate", "FlexDate", 1, Kind::Str),
    ];
    let (base, label) = match key.strip_suffix("Label") {
        Some(base) => (base, true),
        None => (key, false),
    };
    for (prefix, column, count, kind) in FAMILIES {
        let Some(digit) = base.strip_prefix(prefix) else { continue };
        let Ok(n) = digit.parse::<u8>() else { continue };
        if n == 0 || n > count {
            return None;
        }
        let name = format!("{column}{n}{}", if label { "Label" } else { "" });
        return Some((name, if label { Kind::Str } else { kind }));
    }
    None
}

/// The `CommonSecurityLog` row (spec 8).
pub fn common_security_log_row(cef: &Cef, syslog: &SyslogMessage, origin: &Origin) -> Map<String, Json> {
    let mut row = Map::new();
    row.insert("TimeGenerated".into(), rfc3339(origin.received));
    row.insert("DeviceVendor".into(), Json::String(cef.vendor.clone()));
    row.insert("DeviceProduct".into(), Json::String(cef.product.clone()));
    row.insert("DeviceVersion".into(), Json::String(cef.device_version.clone()));
    row.insert("DeviceEventClassID".into(), Json::String(cef.class_id.clone()));
    row.insert("Activity".into(), Json::String(cef.name.clone()));
    row.insert("LogSeverity".into(), Json::String(cef.severity.clone()));
    let mut additional = Vec::new();
    if cef.version != "0" {
        additional.push(format!("CEFVersion={}", cef.version));
    }
    for (key, value) in &cef.extensions {
        let typed = column_of(key).and_then(|(column, kind)| {
            let value = match kind {
                Kind::Str => Json::String(value.clone()),
                Kind::Int => Json::from(value.trim().parse::<i32>().ok()?),
                Kind::Long => Json::from(value.trim().parse::<i64>().ok()?),
                Kind::Real => serde_json::Number::from_f64(value.trim().parse::<f64>().ok()?).map(Json::Number)?,
                Kind::Time => rfc3339(parse_cef_time(value, origin.received)?),
            };
            Some((column, value))
        });
        match typed {
            Some((column, value)) => {
                row.insert(column, value);
            }
            None => additional.push(format!("{key}={value}")),
        }
    }
    if !additional.is_empty() {
        row.insert("AdditionalExtensions".into(), Json::String(additional.join(";")));
    }
    let computer = origin.computer(syslog.hostname.as_deref());
    row.insert("Computer".into(), Json::String(computer));
    row.insert("CollectorHostName".into(), Json::String(origin.collector_host.clone()));
    row.insert("SourceSystem".into(), Json::String("OpsManager".into()));
    if let Some(action) = row.get("DeviceAction").and_then(Json::as_str) {
        row.insert("SimplifiedDeviceAction".into(), Json::String(simplified_action(action)));
    }
    let inbound =
        row.get("CommunicationDirection").and_then(Json::as_str).map(|d| d == "0" || d.eq_ignore_ascii_case("inbound"));
    let (ip, port) = match inbound {
        Some(true) | None => ("SourceIP", "SourcePort"),
        Some(false) => ("DestinationIP", "DestinationPort"),
    };
    if inbound.is_some() {
        if let Some(value) = row.get(ip).cloned() {
            row.insert("RemoteIP".into(), value);
        }
        if let Some(value) = row.get(port).cloned() {
            row.insert("RemotePort".into(), value);
        }
    }
    row
}

/// `start`/`end` values (spec 8): epoch milliseconds, RFC 3339, or
/// `MMM dd [yyyy] HH:mm:ss[.SSS] [zone]` where the zone is `UTC`, `GMT`,
/// `Z` or an offset (`+0100`, `-05:00`); no zone means UTC and no year the
/// year of `received`.
fn parse_cef_time(value: &str, received: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let text = value.trim();
    if !text.is_empty() && text.len() <= 15 && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return DateTime::from_timestamp_millis(text.parse().ok()?);
    }
    if let Ok(when) = DateTime::parse_from_rfc3339(text) {
        return Some(when.with_timezone(&Utc));
    }
    let (clock, offset) = match text.rsplit_once(' ') {
        Some((head, "UTC" | "GMT" | "Z")) => (head, FixedOffset::east_opt(0)?),
        Some((head, zone)) if zone.starts_with(['+', '-']) => (head, parse_zone_offset(zone)?),
        _ => (text, FixedOffset::east_opt(0)?),
    };
    let with_year = format!("{} {clock}", received.year());
    let naive = NaiveDateTime::parse_from_str(clock, "%b %d %Y %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&with_year, "%Y %b %d %H:%M:%S%.f"))
        .ok()?;
    Some(offset.from_local_datetime(&naive).single()?.with_timezone(&Utc))
}

/// `+hhmm` or `+hh:mm` (or `-`).
fn parse_zone_offset(zone: &str) -> Option<FixedOffset> {
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

fn simplified_action(action: &str) -> String {
    let lower = action.to_ascii_lowercase();
    let simplified = match lower.as_str() {
        "deny" | "denied" | "block" | "blocked" | "drop" | "dropped" | "reject" | "rejected" => "Deny",
        "allow" | "allowed" | "accept" | "accepted" | "permit" | "permitted" | "pass" => "Allow",
        _ => return action.to_string(),
    };
    simplified.to_string()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, FixedOffset, Utc};

    use super::*;
    use crate::decode::syslog;

    #[test]
    fn worked_example_from_the_spec() {
        let wire = r"<164>Nov 29 03:14:27 wp-rsyslog-host wpk-cef: CEF:0|WatchpostKit|Kit\|Sensor|1.0|wpk-100|Port scan detected|7|src=10.1.2.3 dst=192.0.2.10 spt=51515 dpt=443 proto=TCP act=blocked suser=alice cs1Label=Rule cs1=deny all cn1Label=Hits cn1=42 msg=scan a\=b c\\d request=https://example.test/a?b=c wpkCustom=xyz";
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z").unwrap().with_timezone(&Utc);
        let message = syslog::parse(wire, now, FixedOffset::east_opt(0).unwrap());
        assert!(is_cef(&message.message));
        let cef = parse(&message.message).unwrap();
        let origin =
            Origin { peer_ip: "127.0.0.1".into(), peer_is_loopback: true, collector_host: "c".into(), received: now };
        let row = common_security_log_row(&cef, &message, &origin);
        let expect = [
            ("DeviceVendor", Json::from("WatchpostKit")),
            ("DeviceProduct", Json::from("Kit|Sensor")),
            ("DeviceVersion", Json::from("1.0")),
            ("DeviceEventClassID", Json::from("wpk-100")),
            ("Activity", Json::from("Port scan detected")),
            ("LogSeverity", Json::from("7")),
            ("SourceIP", Json::from("10.1.2.3")),
            ("DestinationIP", Json::from("192.0.2.10")),
            ("SourcePort", Json::from(51515)),
            ("DestinationPort", Json::from(443)),
            ("Protocol", Json::from("TCP")),
            ("DeviceAction", Json::from("blocked")),
            ("SimplifiedDeviceAction", Json::from("Deny")),
            ("SourceUserName", Json::from("alice")),
            ("DeviceCustomString1Label", Json::from("Rule")),
            ("DeviceCustomString1", Json::from("deny all")),
            ("DeviceCustomNumber1Label", Json::from("Hits")),
            ("DeviceCustomNumber1", Json::from(42)),
            ("Message", Json::from("scan a=b c\\d")),
            ("RequestURL", Json::from("https://example.test/a?b=c")),
            ("AdditionalExtensions", Json::from("wpkCustom=xyz")),
            ("Computer", Json::from("wp-rsyslog-host")),
        ];
        for (column, value) in expect {
            assert_eq!(row.get(column), Some(&value), "{column}");
        }
    }

    #[test]
    fn tagless_cef_bad_types_and_empty_extension() {
        let now = Utc::now();
        let message =
            syslog::parse("<134>Feb 10 12:00:00 host CEF:0|V|P|1|id|n|3|", now, FixedOffset::east_opt(0).unwrap());
        assert_eq!(message.message, "CEF:0|V|P|1|id|n|3|");
        let cef = parse(&message.message).unwrap();
        assert!(cef.extensions.is_empty());
        let cef = parse("CEF:1|V|P|1|id|n|3|spt=notanumber cn7=x").unwrap();
        let origin =
            Origin { peer_ip: "10.0.0.9".into(), peer_is_loopback: false, collector_host: "c".into(), received: now };
        let row = common_security_log_row(&cef, &message, &origin);
        assert_eq!(row["AdditionalExtensions"], "CEFVersion=1;spt=notanumber;cn7=x");
        assert!(!row.contains_key("SourcePort"));
        assert!(parse("CEF:0|only|three").is_none());
        // Values are typed as the table declares: int is 32 bits, bytes
        // are long, start/end are datetimes; what does not fit is kept.
        let cef = parse("CEF:0|V|P|1|id|n|3|spt=99999999999 in=99999999999 start=1764386067000 end=Nov 29 2026 03:14:27.5 +0100 oldFileId=f").unwrap();
        let row = common_security_log_row(&cef, &message, &origin);
        assert!(!row.contains_key("SourcePort"));
        assert_eq!(row["ReceivedBytes"], 99_999_999_999_i64);
        assert_eq!(row["StartTime"], "2025-11-29T03:14:27Z");
        assert_eq!(row["EndTime"], "2026-11-29T02:14:27.500Z");
        assert_eq!(row["OldFileID"], "f");
        assert_eq!(row["AdditionalExtensions"], "spt=99999999999");
        let cef = parse("CEF:0|V|P|1|id|n|3|start=Nov 29 03:14:27 end=sometime").unwrap();
        let row = common_security_log_row(&cef, &message, &origin);
        assert_eq!(row["StartTime"], format!("{}-11-29T03:14:27Z", now.year()));
        assert_eq!(row["AdditionalExtensions"], "end=sometime");
        assert!(!is_cef("CEFX:0|a"));
        assert!(is_cef("  CEF:12|a"));
    }
}
