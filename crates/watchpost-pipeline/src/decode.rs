//! Decoders for wire formats: syslog (RFC 3164 and 5424, with what real
//! senders do) and CEF, and their mapping onto the standard `Syslog` and
//! `CommonSecurityLog` rows (syslog-cef spec).

pub mod cef;
pub mod syslog;
