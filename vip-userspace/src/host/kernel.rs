//! The running kernel, for the features that depend on its version.

/// The oldest kernel vip runs on: 5.9 brought XDP bpf_links (what keeps the
/// datapath attached across restarts) and sk_lookup; 5.5 mmapable arrays.
pub const FLOOR: (u32, u32) = (5, 9);

/// Whether this kernel is at least [`FLOOR`] (an unknown version is let through).
pub fn supported() -> bool {
    version().is_none_or(|v| v >= FLOOR)
}

/// TCX (bpf_link attachments for TC) arrived in 6.6; below it TC programs are
/// attached through netlink (clsact), which cannot be pinned.
pub const TCX: (u32, u32) = (6, 6);

/// The kernel's `major.minor`, as `uname -r` starts.
pub fn version() -> Option<(u32, u32)> {
    let uname = nix::sys::utsname::uname().ok()?;
    parse(&uname.release().to_string_lossy())
}

fn parse(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(str::parse::<u32>);
    Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
}

/// Whether TC attachments are bpf_links here (an unknown version is assumed new).
pub fn has_tcx() -> bool {
    version().is_none_or(|v| v >= TCX)
}

/// `uname -r`.
pub fn release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn releases_parse_to_major_and_minor() {
        assert_eq!(parse("6.1.0-57-amd64"), Some((6, 1)));
        assert_eq!(parse("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(parse("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse("garbage"), None);
    }
}
