//! Client errors as NSQ sends them, in nsqd's protocol V2 and nsqlookupd's V1 alike: an error
//! `"<CODE> <description>"`, fatal (the server closes the connection after sending it) unless
//! it is one of V2's three per-message failures.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub description: String,
    /// Fatal errors close the connection once the error is written.
    pub fatal: bool,
    /// The underlying failure, for the server's log only (Go's `ParentErr`).
    pub cause: Option<String>,
}

impl ProtocolError {
    pub fn fatal(code: &'static str, description: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            description: description.into(),
            fatal: true,
            cause: None,
        }
    }

    /// Only E_FIN_FAILED, E_REQ_FAILED and E_TOUCH_FAILED keep the connection open.
    pub fn non_fatal(code: &'static str, description: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            description: description.into(),
            fatal: false,
            cause: None,
        }
    }

    pub fn invalid(description: impl Into<String>) -> ProtocolError {
        ProtocolError::fatal("E_INVALID", description)
    }

    pub fn caused_by(mut self, cause: impl fmt::Display) -> ProtocolError {
        self.cause = Some(cause.to_string());
        self
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.description)
    }
}

impl std::error::Error for ProtocolError {}
