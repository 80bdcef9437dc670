//! Client errors as NSQ sends them: an error frame `"<CODE> <description>"`, fatal (the server
//! closes the connection after sending it) unless it is one of the three per-message failures.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub description: String,
    /// Fatal errors close the connection once the error frame is written.
    pub fatal: bool,
}

impl ProtocolError {
    pub fn fatal(code: &'static str, description: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            description: description.into(),
            fatal: true,
        }
    }

    /// Only E_FIN_FAILED, E_REQ_FAILED and E_TOUCH_FAILED keep the connection open.
    pub fn non_fatal(code: &'static str, description: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            description: description.into(),
            fatal: false,
        }
    }

    pub fn invalid(description: impl Into<String>) -> ProtocolError {
        ProtocolError::fatal("E_INVALID", description)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.description)
    }
}

impl std::error::Error for ProtocolError {}
