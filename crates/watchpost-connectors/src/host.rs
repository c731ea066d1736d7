//! Facts about the machine the connector runs on.

/// The computer name: the kernel host name, or `HOSTNAME`, or `localhost`.
///
/// Read from `/proc` rather than through a crate: it is one file on Linux,
/// the only platform the agent ships for today.
pub fn computer_name() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let name = from_kernel.or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_default();
    let name = name.trim();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name.to_string()
    }
}
