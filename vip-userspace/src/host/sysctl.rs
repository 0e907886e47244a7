//! Reading and writing sysctls through /proc/sys, in the caller's namespace.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("sysctl {key}: {source}")]
pub struct SysctlError {
    pub key: String,
    #[source]
    pub source: std::io::Error,
}

impl crate::errors::Blame for SysctlError {
    fn is_user_error(&self) -> bool {
        false
    }
}

/// The key of `leaf` under interface (or `all`, `default`) `scope` of
/// `family` (`ipv4`, `ipv6`). An interface name may hold dots (a VLAN,
/// `eth0.100`): such a key is written with slashes, as sysctl(8) takes it.
pub fn conf_key(family: &str, scope: &str, leaf: &str) -> String {
    if scope.contains('.') {
        format!("net/{family}/conf/{scope}/{leaf}")
    } else {
        format!("net.{family}.conf.{scope}.{leaf}")
    }
}

/// The interface whose own sysctl `key` is (not `all` or `default`).
pub fn interface_of(key: &str) -> Option<&str> {
    match parts(key).as_slice() {
        ["net", "ipv4" | "ipv6", "conf", scope, _] if !["all", "default"].contains(scope) => {
            Some(scope)
        }
        _ => None,
    }
}

/// The parts of `key`: split at slashes if it has any (an interface name
/// with dots), else at dots.
fn parts(key: &str) -> Vec<&str> {
    key.split(if key.contains('/') { '/' } else { '.' })
        .collect()
}

/// The file of `key` under /proc/sys. Only a `net` key whose parts are
/// names has one: a key read back from a hand-edited state file cannot
/// point elsewhere (`..`, an empty part).
fn path(key: &str) -> Result<PathBuf, SysctlError> {
    let parts = parts(key);
    let named = parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != "..");
    if parts.len() < 2 || parts[0] != "net" || !named {
        return Err(SysctlError {
            key: key.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a network sysctl's key",
            ),
        });
    }
    Ok(parts
        .iter()
        .fold(PathBuf::from("/proc/sys"), |path, part| path.join(part)))
}

pub fn read(key: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path(key)?)
        .map(|v| v.trim().to_string())
        .map_err(|source| SysctlError {
            key: key.to_string(),
            source,
        })
}

/// The value of `key`, or `None` when it is the sysctl of an interface that
/// is not there: gone (deleted, to be created again, its sysctls with it),
/// or created so recently that its sysctls are not registered yet (the
/// device's name is found a moment before). Any other key that does not
/// exist is an error.
pub fn read_if_present(key: &str) -> Result<Option<String>, SysctlError> {
    match read(key) {
        Ok(value) => Ok(Some(value)),
        Err(e)
            if e.source.kind() == std::io::ErrorKind::NotFound && interface_of(key).is_some() =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub fn write(key: &str, value: &str) -> Result<(), SysctlError> {
    std::fs::write(path(key)?, value).map_err(|source| SysctlError {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_name_with_dots_gets_a_key_with_slashes() {
        assert_eq!(
            conf_key("ipv4", "eth0", "arp_ignore"),
            "net.ipv4.conf.eth0.arp_ignore"
        );
        let vlan = conf_key("ipv4", "eth0.100", "arp_ignore");
        assert_eq!(vlan, "net/ipv4/conf/eth0.100/arp_ignore");
        assert_eq!(
            path(&vlan).unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/arp_ignore")
        );
        assert_eq!(
            path("net.ipv4.conf.all.arp_ignore").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/all/arp_ignore")
        );
    }

    #[test]
    fn a_key_that_leaves_the_network_sysctls_has_no_path() {
        for key in [
            "net/ipv4/conf/../../kernel/core_pattern",
            "net/../kernel/core_pattern",
            "kernel.core_pattern",
            "kernel/core_pattern",
            "net//ipv4",
            "net..ipv4",
            "/etc/passwd",
            "net",
            "",
        ] {
            let error = path(key).unwrap_err();
            assert_eq!(error.key, key);
            assert_eq!(
                error.source.kind(),
                std::io::ErrorKind::InvalidInput,
                "{key}"
            );
        }
        assert_eq!(
            path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }

    #[test]
    fn only_an_interfaces_own_sysctl_names_it() {
        assert_eq!(interface_of("net.ipv4.conf.eth0.arp_ignore"), Some("eth0"));
        assert_eq!(
            interface_of("net/ipv4/conf/eth0.100/arp_announce"),
            Some("eth0.100")
        );
        assert_eq!(interface_of("net.ipv4.conf.all.arp_ignore"), None);
        assert_eq!(interface_of("net.ipv4.conf.default.rp_filter"), None);
        assert_eq!(interface_of("net.ipv6.conf.all.forwarding"), None);
        assert_eq!(interface_of("net.ipv4.ip_forward"), None);
    }
}
