//! Peak resident memory of this process, from /proc (Linux).

/// Peak RSS so far in bytes (VmHWM), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reset the peak-RSS counter to the current RSS (Linux `clear_refs` 5), so
/// the next reading covers only what follows. Returns false where unsupported.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Bytes as GiB/MiB text.
pub fn format_bytes(b: u64) -> String {
    pixel::memory::format_bytes(b as f64)
}
