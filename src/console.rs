//! Diagnostics on stderr that never panic.
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
        $crate::console::err_line(format_args!($($arg)*))
    };
}
