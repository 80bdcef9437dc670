//! The life of a process, daemon or tool alike: the tokio runtime it runs on, and the one
//! signal wait (SIGINT or SIGTERM) that ends it.

use std::future::Future;

/// A multi-threaded runtime with I/O and timers; `worker_threads` caps its threads (the tools
/// need two; daemons take one per core).
pub fn runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

/// Runs a daemon's main future on a runtime of its own; its output is the exit code.
pub fn run_until_exit(main: impl Future<Output = i32>) -> i32 {
    match runtime(None) {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("nsqrs: failed to start runtime - {e}");
            1
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives. An error means the handlers could not be
/// installed, which it reports at once: the process could not be stopped gracefully, so every
/// caller treats it as a failure to start.
pub async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
