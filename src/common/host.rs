//! The machine's host name, as nsqd and nsqlookupd register it and as clients announce it.

/// The host name, or `localhost` when the system will not say.
pub fn local_hostname() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The host name up to its first dot, as go-nsq and nsq_to_file shorten it.
pub fn short_hostname() -> String {
    let full = local_hostname();
    full.split('.').next().unwrap_or(&full).to_string()
}
