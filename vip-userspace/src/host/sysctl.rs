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

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

pub fn read(key: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path(key))
        .map(|v| v.trim().to_string())
        .map_err(|source| SysctlError {
            key: key.to_string(),
            source,
        })
}

/// The value of `key`, or `None` when it does not exist (the sysctls of an
/// interface that is gone).
pub fn read_if_present(key: &str) -> Result<Option<String>, SysctlError> {
    match read(key) {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn write(key: &str, value: &str) -> Result<(), SysctlError> {
    std::fs::write(path(key), value).map_err(|source| SysctlError {
        key: key.to_string(),
        source,
    })
}
