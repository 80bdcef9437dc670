//! What the tools print for people: diagnostics on stderr that never panic, and numbers that
//! read well.
//!
//! `eprintln!` panics when the reader of stderr has gone away (`nsqrs to-file … 2>&1 | head`),
//! which would kill the task that wanted to log, a consumer's connection for instance. A
//! diagnostic is not what a tool is for: what cannot be written is dropped and the work goes
//! on. The client-side modules and the binary print through `errln!` (clippy's
//! `print_stderr` lint keeps it that way); the binary's own output goes through its `outln!`.

use std::fmt;
use std::io::Write;

/// Writes one line to stderr, dropping it if stderr is closed or broken.
pub fn err_line(args: fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|_| err.write_all(b"\n"));
}

/// `eprintln!` that drops the line instead of panicking when stderr cannot take it.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::common::console::err_line(format_args!($($arg)*))
    };
}

/// "1 message", "2 messages": a count and its noun, plural when it is not one.
pub fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// A rate for people: `2,992 msg/s`, `12.5 msg/s`; whole numbers once the fraction no longer
/// matters.
pub fn per_second(rate: f64, unit: &str) -> String {
    if !rate.is_finite() || rate < 0.0 {
        return format!("- {unit}/s");
    }
    if rate >= 100.0 {
        format!("{} {unit}/s", thousands(rate.round() as u64))
    } else {
        format!("{rate:.1} {unit}/s")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_well() {
        assert_eq!(count(1, "message"), "1 message");
        assert_eq!(count(0, "message"), "0 messages");
        assert_eq!(count(2, "message ID"), "2 message IDs");
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(per_second(2992.1188, "msg"), "2,992 msg/s");
        assert_eq!(per_second(1_234_567.4, "msg"), "1,234,567 msg/s");
        assert_eq!(per_second(12.3456, "msg"), "12.3 msg/s");
        assert_eq!(per_second(f64::NAN, "msg"), "- msg/s");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }
}
