//! Errors as the operator meets them: whose error it is, the operator's (what
//! they asked for cannot be done; `vip` exits with status 2, having changed
//! nothing) or the host's (exit 1), which every error type says through
//! [`Blame`]; and the one line that shows an error with its causes ([`chain`]).

pub trait Blame {
    /// The operator asked for something that cannot be done, as opposed to a
    /// failure of the host.
    fn is_user_error(&self) -> bool;
}

/// Failures of the host's system calls, files and encoders.
macro_rules! host_failures {
    ($($error:ty),*) => {
        $(impl Blame for $error {
            fn is_user_error(&self) -> bool {
                false
            }
        })*
    };
}

host_failures!(std::io::Error, nix::Error, serde_json::Error);

/// An error and its sources on one line, as `anyhow`'s `{:#}` prints them, less
/// a source that only repeats the line before it (aya's syscall errors do).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        source = cause.source();
    }
    parts.join(": ")
}
