//! The life of a process, daemon or tool alike: the tokio runtime it runs on, and the one
//! way SIGINT or SIGTERM ends it (`ExitSignals`, or `wait_for_signal` where catching them
//! from the first await is soon enough).

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

/// Runs a daemon's main future on a runtime of its own, with the memory reclaimer beside it;
/// its output is the exit code.
pub fn run_until_exit(main: impl Future<Output = i32>) -> i32 {
    match runtime(None) {
        Ok(runtime) => runtime.block_on(async {
            super::reclaim::start();
            main.await
        }),
        Err(e) => {
            eprintln!("nsqrs: failed to start runtime - {e}");
            1
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment `install` returns. A daemon installs them before
/// it starts anything, so a signal sent while it is still starting (a supervisor stopping it
/// right after its listener line appeared) shuts it down gracefully instead of killing it.
pub struct ExitSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ExitSignals {
    /// An error means the handlers could not be installed: the process could not be stopped
    /// gracefully, so every caller treats it as a failure to start.
    pub fn install() -> std::io::Result<ExitSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ExitSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first of the two.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives, for the tools, whose work starts at the first
/// await anyway. An error is `ExitSignals::install`'s, reported at once.
pub async fn wait_for_signal() -> std::io::Result<()> {
    ExitSignals::install()?.recv().await;
    Ok(())
}
