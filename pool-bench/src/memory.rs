//! The process's resident memory, from `/proc/self/status` (Linux).

/// The process's peak resident set size (`VmHWM`) in bytes; `None` where `/proc` is missing.
pub fn peak_rss_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

/// The process's current resident set size (`VmRSS`) in bytes; `None` where `/proc` is
/// missing.
pub fn current_rss_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

/// Bytes in a mebibyte, the unit of `peak_rss_mb`.
pub const MIB: f64 = 1024.0 * 1024.0;

fn status_field(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib_field(&status, field)
}

/// Reads a `Name:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let status = "Name:\tpool-bench\nVmHWM:\t   20480 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_kib_field(status, "VmHWM:"), Some(20480 * 1024));
        assert_eq!(parse_kib_field(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(parse_kib_field(status, "VmSwap:"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        // No ordering between the two: the kernel updates VmHWM lazily, so VmRSS read
        // first can briefly exceed it.
        let one_mib_more = std::hint::black_box(vec![1u8; 1 << 20]);
        assert!(current_rss_bytes().unwrap() > one_mib_more.len() as u64);
        assert!(peak_rss_bytes().unwrap() > one_mib_more.len() as u64);
    }
}
