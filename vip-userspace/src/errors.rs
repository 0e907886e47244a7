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
/// a source that the message before it already ends with (aya's syscall
/// errors repeat themselves, and a message that shows its `{source}` is
/// followed by that source).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !parts.last().is_some_and(|last| last.ends_with(&part)) {
            parts.push(part);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read config /x: {source}")]
    struct Shown {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("loading the datapath")]
    struct Hidden {
        source: std::io::Error,
    }

    fn missing() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    #[test]
    fn a_source_the_message_shows_is_not_repeated() {
        assert_eq!(
            chain(&Shown { source: missing() }),
            "cannot read config /x: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_source_the_message_does_not_show_follows_it() {
        assert_eq!(
            chain(&Hidden { source: missing() }),
            "loading the datapath: No such file or directory (os error 2)"
        );
    }
}
