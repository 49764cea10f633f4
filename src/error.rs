//! CNI error values: the spec's codes (SPEC.md "Error" table, FEATURES.md 1.8), a typed
//! `CniError` that survives an `anyhow` chain, and `ErrorList` for DEL and GC, which keep going
//! after a failure and report everything at the end.

use std::fmt;

/// Spec error codes. 100 and above are free for plugins.
pub mod code {
    /// Unspecified.
    pub const UNKNOWN: u32 = 0;
    /// The config's `cniVersion` is not one this plugin speaks.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A config field the plugin does not support.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A required `CNI_*` environment variable is missing or invalid.
    pub const INVALID_ENV: u32 = 4;
    /// An I/O failure (e.g. reading stdin).
    pub const IO_FAILURE: u32 = 5;
    /// Decoding failure: stdin is not JSON, a version string does not parse.
    pub const DECODING_FAILURE: u32 = 6;
    /// The network configuration is invalid.
    pub const INVALID_CONFIG: u32 = 7;
    /// `CNI_NETNS` is the plugin's own netns (library code, not in the spec table).
    pub const INVALID_NETNS: u32 = 8;
    /// A transient condition; the runtime should retry later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot service ADD.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// STATUS: cannot service ADD, and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Any error that carries no code of its own.
    pub const INTERNAL: u32 = 999;
}

/// An error with a spec code. Put one in an `anyhow` chain (directly or as context) and skel
/// finds it with [`code_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Spec code (see [`code`]).
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation; may be empty.
    pub details: String,
}

impl CniError {
    /// An error with a code and a message, no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}: {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for CniError {}

/// An invalid-config error (code 7) as an `anyhow::Error`.
pub fn bad_config(msg: impl Into<String>) -> anyhow::Error {
    CniError::new(code::INVALID_CONFIG, msg).into()
}

/// An invalid-environment error (code 4) as an `anyhow::Error`.
pub fn bad_env(msg: impl Into<String>) -> anyhow::Error {
    CniError::new(code::INVALID_ENV, msg).into()
}

/// The spec code of the first [`CniError`] anywhere in the chain, or `None`.
pub fn cni_error_of(err: &anyhow::Error) -> Option<&CniError> {
    err.chain().find_map(|e| e.downcast_ref::<CniError>())
}

/// The spec code for an error: the first [`CniError`] in its chain, else 999.
pub fn code_of(err: &anyhow::Error) -> u32 {
    cni_error_of(err).map_or(code::INTERNAL, |e| e.code)
}

/// Converts any error into the wire form: the code of the first [`CniError`] in the chain
/// (999 if none), a message made of the whole chain, and that error's details kept apart, so a
/// delegate's `details` survive the context a caller adds.
pub fn to_wire(err: &anyhow::Error) -> CniError {
    let mut found: Option<&CniError> = None;
    let mut parts = Vec::new();
    for e in err.chain() {
        match e.downcast_ref::<CniError>() {
            Some(c) if found.is_none() => {
                found = Some(c);
                parts.push(c.msg.clone());
            }
            _ => parts.push(e.to_string()),
        }
    }
    match found {
        Some(c) => CniError {
            code: c.code,
            msg: parts.join(": "),
            details: c.details.clone(),
        },
        None => CniError::new(code::INTERNAL, parts.join(": ")),
    }
}

/// Errors collected by a verb that must keep going (DEL, GC): every step runs, and the
/// failures are reported together at the end.
#[derive(Debug, Default)]
pub struct ErrorList(Vec<anyhow::Error>);

impl ErrorList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the error of `r`, if any, and goes on.
    pub fn note<T>(&mut self, r: anyhow::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// True when nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing failed, else one error listing every failure; the code is that
    /// of the first failure.
    pub fn finish(self) -> anyhow::Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.into_iter().next().expect("one error")),
            n => {
                let code = code_of(&self.0[0]);
                let msg = self
                    .0
                    .iter()
                    .map(|e| format!("{e:#}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(CniError::new(code, format!("{n} errors: {msg}")).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn code_survives_context() {
        let e: anyhow::Result<()> = Err(bad_config("no name"));
        let e = e.context("loading config").unwrap_err();
        assert_eq!(code_of(&e), 7);
        let w = to_wire(&e);
        assert_eq!(w.code, 7);
        assert_eq!(w.msg, "loading config: no name");
    }

    #[test]
    fn details_survive_context() {
        let inner: anyhow::Error = CniError::new(11, "busy").with_details("retry in 5s").into();
        let e = inner.context("host-local ADD");
        assert_eq!(
            to_wire(&e),
            CniError::new(11, "host-local ADD: busy").with_details("retry in 5s")
        );
    }

    #[test]
    fn plain_error_is_internal() {
        let e = anyhow::anyhow!("boom");
        assert_eq!(to_wire(&e), CniError::new(999, "boom"));
    }

    #[test]
    fn top_level_cni_error_kept_whole() {
        let e: anyhow::Error = CniError::new(1, "incompatible CNI versions")
            .with_details("x")
            .into();
        assert_eq!(to_wire(&e).details, "x");
    }

    #[test]
    fn error_list_joins() {
        let mut l = ErrorList::new();
        l.note::<()>(Err(bad_env("a")));
        l.note(Ok(()));
        l.note::<()>(Err(anyhow::anyhow!("b")));
        let e = l.finish().unwrap_err();
        assert_eq!(code_of(&e), 4);
        assert!(format!("{e}").contains("2 errors: a; b"));
    }
}
