//! The `nsqrs` binary: argument parsing and wiring only; the work is in the library.

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nsqrs", version, about = "NSQ rebuilt in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load generator and latency meter for any NSQ-compatible server
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Bench(args) => bench::run(args),
    };
    std::process::exit(code);
}
