//! The `nsqrs` binary: argument parsing and dispatch only; the work is in the library.
//!
//! Invoked under the name `nsqd` (a symlink or a copy), the binary takes the role of nsqd: the
//! whole command line is read as `nsqrs serve`'s, Go flag syntax included, so existing nsqd
//! command lines, scripts and test harnesses work unchanged. Under the name `nsqlookupd` it
//! takes nsqlookupd's role (`nsqrs lookupd`) the same way, and under `nsqadmin` the admin's
//! (`nsqrs admin`).

// Output goes through `outln!` and `errln!`, which survive a closed pipe (cmd/tools.rs).
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod tools;

mod admin;
mod adopt;
mod bench;
#[cfg(test)]
mod docs;
mod help;
mod lookupd;
mod publish;
mod replay;
mod serve;
mod stat;
mod tail;
mod to_db;
mod to_file;
mod to_http;
mod to_nsq;
mod topic;
mod trace;

use std::ffi::OsString;
use std::path::Path;

use clap::{ArgMatches, FromArgMatches, Parser, Subcommand};
use lookupd::LookupdArgs;
use nsqrs::errln;
use serve::ServeArgs;

#[derive(Parser)]
#[command(
    name = "nsqrs",
    version,
    about = "NSQ rebuilt in Rust: a drop-in nsqd and a toolkit",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the nsqd-compatible broker (what runs when this binary is invoked as `nsqd`)
    ///
    /// Speaks nsqd's TCP protocol and HTTP API and takes every nsqd flag, in Go's flag syntax
    /// too. An OK to a publish means the message is on disk: a crash loses no acknowledged
    /// message. Without --lookupd-tcp-address it also runs a lookupd on 4160/4161. It reports
    /// what happens to each message on the topic nsqrs.events (--lifecycle-events), which
    /// `nsqrs to-db --events` archives for `nsqrs trace`.
    // `--version` here is nsqd's flag, which prints nsqd's version string, not clap's.
    #[command(disable_version_flag = true)]
    Serve(Box<ServeArgs>),
    /// Run the nsqlookupd-compatible discovery server (what runs when this binary is invoked
    /// as `nsqlookupd`)
    ///
    /// nsqlookupd's TCP protocol, HTTP API and flags; brokers register with it, consumers ask
    /// it where topics are.
    // As for serve, `--version` is nsqlookupd's own flag.
    #[command(disable_version_flag = true)]
    Lookupd(Box<LookupdArgs>),
    /// Run the nsqadmin-compatible web UI, with archived messages, deferred messages and
    /// replays (what runs when this binary is invoked as `nsqadmin`)
    #[command(disable_version_flag = true)]
    Admin(Box<admin::AdminArgs>),
    /// Load generator and latency meter for any NSQ-compatible server (NSQ's bench method)
    ///
    /// Writers publish MPUB batches on several connections, readers consume with a large RDY
    /// and finish every message; the report gives messages and bytes per second, or
    /// publish-to-delivery latency quantiles with --mode latency.
    Bench(Box<bench::BenchArgs>),
    /// Publish messages from arguments or stdin to nsqd (to_nsq)
    ///
    /// Every message goes to every --nsqd-tcp-address. Once every message is acknowledged,
    /// prints each message's ID (where the broker returns it, as nsqrs does) and `OK <count>
    /// <nsqd address>` for each nsqd. A message the broker refuses stops the run: what was
    /// published before it is printed as for a success, the refusal on stderr, status 1.
    #[command(disable_version_flag = true)]
    Pub(Box<publish::PubArgs>),
    /// Print the messages of one or more topics as they arrive (nsq_tail)
    ///
    /// Reads on a new #ephemeral channel unless --channel says otherwise, so it sees only new
    /// messages and takes none from other consumers. Each message is finished once printed.
    #[command(disable_version_flag = true)]
    Tail(Box<tail::TailArgs>),
    /// Archive topics to rotating (optionally gzip) files, finishing only what is fsync'ed (nsq_to_file)
    ///
    /// A crash can write a message twice, never lose one. Every file left behind is valid for
    /// its format (gzip files decompress even when empty).
    #[command(disable_version_flag = true)]
    ToFile(Box<to_file::ToFileArgs>),
    /// Rates and depths of one channel across nsqd, or of the whole cluster (nsq_stat)
    ///
    /// With --topic and --channel, nsq_stat's columns summed over every nsqd; without
    /// --channel, a table of every topic and channel. A topic or channel no nsqd has is an
    /// error, not a row of zeros.
    #[command(disable_version_flag = true)]
    Stat(Box<stat::StatArgs>),
    /// Archive a topic and its lifecycle events into SQLite or PostgreSQL, finishing only what is committed
    ///
    /// Its channels are named after the topic and the archive, so it keeps its place across
    /// restarts and shares messages or events with no other archiver. A channel left behind
    /// by a retired archiver keeps collecting: delete it (nsqd's /channel/delete).
    #[command(name = "to-db")]
    ToDb(Box<to_db::ToDbArgs>),
    /// Show a message's history from the archive: publish, deliveries, requeues, finishes, replays
    ///
    /// With an ID, the message and a timeline per channel, and a note when the broker's event
    /// mode means steps may be missing; without one, --grep or --where find it (the newest
    /// --limit are listed when several match).
    Trace(Box<trace::TraceArgs>),
    /// Republish archived messages of a time window in publish order, resumable, optionally to another topic
    ///
    /// Each MPUB batch is checkpointed in the archive, so an interrupted run resumes where it
    /// stopped (--resume, or the same command again). A window or an ID the archive does not
    /// hold is said, not replayed as nothing.
    #[command(disable_version_flag = true)]
    Replay(Box<replay::ReplayArgs>),
    /// Create, delete, empty, pause, unpause or tombstone a topic on a broker or the cluster
    Topic(Box<topic::TopicArgs>),
    /// Create, delete, empty, pause or unpause a channel on a broker or the cluster
    Channel(Box<topic::ChannelArgs>),
    /// Forward topics to other nsqd, finishing each message only once a destination took it (nsq_to_nsq)
    ///
    /// A refusal or a lost connection requeues the message with backoff, and nothing is given
    /// up after some number of attempts unless --consumer-opt max_attempts,N asks. The
    /// destination gives each message a new ID.
    #[command(name = "to-nsq", disable_version_flag = true)]
    ToNsq(Box<to_nsq::ToNsqArgs>),
    /// Send each message of a topic to HTTP endpoints, finishing it only once one answered 2xx (nsq_to_http)
    ///
    /// Any other answer, a timeout or a lost connection requeues the message with backoff;
    /// nothing is given up unless --consumer-opt max_attempts,N asks. HTTPS trusts the
    /// system's certificate authorities (SSL_CERT_FILE names others).
    #[command(name = "to-http", disable_version_flag = true)]
    ToHttp(Box<to_http::ToHttpArgs>),
    /// Take over a lost broker's replicated messages on the broker that holds its copy
    Adopt(Box<adopt::AdoptArgs>),
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let argv = match collect_args(std::env::args_os()) {
        Ok(argv) => argv,
        Err(msg) => {
            errln!("error: {msg}");
            return 2;
        }
    };

    match role(&argv[0]) {
        Role::Nsqd => {
            return match serve::parse_as_nsqd(&argv[1..]) {
                // nsqd never embeds a lookupd or an admin: scripts that start `nsqd` expect
                // exactly nsqd.
                Ok((args, matches)) => serve_main(args, &matches, false),
                Err(e) => e.exit(),
            };
        }
        Role::Nsqlookupd => {
            return match lookupd::parse_as_nsqlookupd(&argv[1..]) {
                Ok((args, matches)) => lookupd_main(args, &matches),
                Err(e) => e.exit(),
            };
        }
        Role::Nsqadmin => {
            return match admin::parse_as_nsqadmin(&argv[1..]) {
                Ok((args, matches)) => admin_main(args, &matches),
                Err(e) => e.exit(),
            };
        }
        Role::Nsqrs => {}
    }

    let argv = normalize_subcommand_args(argv);
    let mut cmd = help::command();
    let matches = match cmd.try_get_matches_from_mut(&argv) {
        Ok(m) => m,
        Err(e) => return usage_error(&argv, e),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    match cli.command {
        Commands::Serve(args) => {
            let args = *args;
            let sub = matches
                .subcommand_matches("serve")
                .expect("clap returned Serve without its matches");
            serve_main(args, sub, true)
        }
        Commands::Lookupd(args) => {
            let sub = matches
                .subcommand_matches("lookupd")
                .expect("clap returned Lookupd without its matches");
            lookupd_main(*args, sub)
        }
        Commands::Admin(args) => {
            let sub = matches
                .subcommand_matches("admin")
                .expect("clap returned Admin without its matches");
            admin_main(*args, sub)
        }
        Commands::Bench(args) => bench::run(*args),
        Commands::Pub(args) => publish::run(*args),
        Commands::Tail(args) => tail::run(*args),
        Commands::ToFile(args) => to_file::run(*args),
        Commands::Stat(args) => stat::run(*args),
        Commands::ToDb(args) => to_db::run(*args),
        Commands::Trace(args) => trace::run(*args),
        Commands::Replay(args) => replay::run(*args),
        Commands::Topic(args) => topic::run_topic(*args),
        Commands::Channel(args) => topic::run_channel(*args),
        Commands::ToNsq(args) => to_nsq::run(*args),
        Commands::ToHttp(args) => to_http::run(*args),
        Commands::Adopt(args) => adopt::run(*args),
    }
}

/// Help and version go out as clap prints them. For the client tools, any other parse error
/// is reduced to its first line: scripts get one clear stderr line and exit status 2.
fn usage_error(argv: &[String], e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let tool = argv.get(1).is_some_and(|s| tools::one_line_errors(s));
    if !tool || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    // clap puts details (which argument was missing) on indented lines before the usage.
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    errln!("{}", line.join(" "));
    2
}

/// Program name and arguments as UTF-8. Paths that are not UTF-8 would be silently mangled by
/// a lossy conversion, so they are an error instead.
fn collect_args(args: impl Iterator<Item = OsString>) -> Result<Vec<String>, String> {
    let argv: Vec<String> = args
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not valid UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    if argv.is_empty() {
        // Only an exotic exec(2) gets here; behave as `nsqrs` with no arguments.
        return Ok(vec!["nsqrs".to_string()]);
    }
    Ok(argv)
}

/// Which program the binary plays, from the file name it was invoked under.
#[derive(Debug, PartialEq)]
enum Role {
    Nsqd,
    Nsqlookupd,
    Nsqadmin,
    Nsqrs,
}

fn role(argv0: &str) -> Role {
    match Path::new(argv0).file_name().and_then(|n| n.to_str()) {
        Some("nsqd" | "nsqd.exe") => Role::Nsqd,
        Some("nsqlookupd" | "nsqlookupd.exe") => Role::Nsqlookupd,
        Some("nsqadmin" | "nsqadmin.exe") => Role::Nsqadmin,
        _ => Role::Nsqrs,
    }
}

/// Applies Go flag syntax to the arguments of the subcommands that imitate Go tools.
fn normalize_subcommand_args(argv: Vec<String>) -> Vec<String> {
    match argv.get(1).map(String::as_str) {
        Some("serve") => {
            let mut out = argv[..2].to_vec();
            out.extend(serve::normalize_serve_args(&argv[2..]));
            out
        }
        Some("lookupd") => {
            let mut out = argv[..2].to_vec();
            out.extend(lookupd::normalize_lookupd_args(&argv[2..]));
            out
        }
        Some("admin") => {
            let mut out = argv[..2].to_vec();
            out.extend(admin::normalize_admin_args(&argv[2..]));
            out
        }
        Some(sub) => match tools::normalize_tool_args(sub, &argv[2..]) {
            Some(rest) => {
                let mut out = argv[..2].to_vec();
                out.extend(rest);
                out
            }
            None => argv,
        },
        None => argv,
    }
}

fn serve_main(args: ServeArgs, matches: &ArgMatches, may_embed: bool) -> i32 {
    if args.version {
        outln!("{}", serve::nsqd_version_string());
        return 0;
    }
    if !args.trailing.is_empty() {
        errln!("warning: ignoring arguments after the flags: {:?}", args.trailing);
    }
    match args.into_options(matches) {
        Ok(mut opts) => {
            opts.embedded_lookupd &= may_embed;
            opts.embedded_admin &= may_embed;
            start_broker(opts)
        }
        Err(msg) => {
            // The contract with scripts is one line on stderr, whatever the message holds.
            errln!("error: {}", msg.replace('\n', " "));
            2
        }
    }
}

fn lookupd_main(args: LookupdArgs, matches: &ArgMatches) -> i32 {
    if args.version {
        outln!("{}", lookupd::nsqlookupd_version_string());
        return 0;
    }
    if !args.trailing.is_empty() {
        errln!("warning: ignoring arguments after the flags: {:?}", args.trailing);
    }
    match args.into_options(matches) {
        Ok(opts) => nsqrs::nsqlookupd::run(opts),
        Err(msg) => {
            errln!("error: {}", msg.replace('\n', " "));
            2
        }
    }
}

fn admin_main(args: admin::AdminArgs, matches: &ArgMatches) -> i32 {
    if args.version {
        outln!("{}", admin::nsqadmin_version_string());
        return 0;
    }
    if !args.trailing.is_empty() {
        errln!("warning: ignoring arguments after the flags: {:?}", args.trailing);
    }
    match args.into_options(matches) {
        Ok(opts) => nsqrs::admin::run(opts),
        Err(msg) => {
            errln!("error: {}", msg.replace('\n', " "));
            2
        }
    }
}

/// Runs the broker with the resolved options and returns the process exit code.
fn start_broker(opts: nsqrs::nsqd::options::NsqdOptions) -> i32 {
    nsqrs::nsqd::run(opts)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clap_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_accepts_go_syntax_after_the_subcommand() {
        let argv = normalize_subcommand_args(argv(&[
            "nsqrs",
            "serve",
            "-tcp-address",
            "127.0.0.1:9",
            "--snappy",
            "-mem-queue-size",
            "5",
        ]));
        let matches = Cli::command().try_get_matches_from(&argv).unwrap();
        let Commands::Serve(args) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("parsed as another subcommand");
        };
        let args = *args;
        let opts = args
            .into_options(matches.subcommand_matches("serve").unwrap())
            .unwrap();
        assert_eq!(opts.tcp_address, "127.0.0.1:9");
        assert_eq!(opts.mem_queue_size, 5);
        assert!(opts.snappy);
    }

    #[test]
    fn only_arguments_after_serve_are_rewritten() {
        assert_eq!(
            normalize_subcommand_args(argv(&["nsqrs", "-tcp-address", "x"])),
            argv(&["nsqrs", "-tcp-address", "x"])
        );
        assert_eq!(
            normalize_subcommand_args(argv(&["nsqrs", "serve", "--deflate"])),
            argv(&["nsqrs", "serve", "--deflate=true"])
        );
    }

    #[test]
    fn serve_version_is_nsqds_flag() {
        let matches = Cli::command()
            .try_get_matches_from(["nsqrs", "serve", "--version=true"])
            .unwrap();
        let Commands::Serve(args) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("parsed as another subcommand");
        };
        let args = *args;
        assert!(args.version);
    }

    #[test]
    fn role_comes_from_the_file_name() {
        assert_eq!(role("nsqd"), Role::Nsqd);
        assert_eq!(role("/usr/local/bin/nsqd"), Role::Nsqd);
        assert_eq!(role("nsqlookupd"), Role::Nsqlookupd);
        assert_eq!(role("/usr/local/bin/nsqlookupd"), Role::Nsqlookupd);
        assert_eq!(role("/usr/local/bin/nsqrs"), Role::Nsqrs);
        assert_eq!(role("/opt/nsqd/bin/nsqrs"), Role::Nsqrs);
        assert_eq!(role("/opt/nsqlookupd/bin/nsqrs"), Role::Nsqrs);
        assert_eq!(role("nsqd-old"), Role::Nsqrs);
        assert_eq!(role("nsqlookupd2"), Role::Nsqrs);
        assert_eq!(role("/usr/local/bin/nsqadmin"), Role::Nsqadmin);
    }

    #[test]
    fn lookupd_accepts_go_syntax_after_the_subcommand() {
        let argv = normalize_subcommand_args(argv(&[
            "nsqrs",
            "lookupd",
            "-tcp-address",
            "127.0.0.1:9",
            "-verbose",
            "-tombstone-lifetime",
            "3s",
        ]));
        let matches = Cli::command().try_get_matches_from(&argv).unwrap();
        let Commands::Lookupd(args) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("parsed as another subcommand");
        };
        let opts = args
            .into_options(matches.subcommand_matches("lookupd").unwrap())
            .unwrap();
        assert_eq!(opts.tcp_address, "127.0.0.1:9");
        assert_eq!(opts.tombstone_lifetime, std::time::Duration::from_secs(3));
    }
}
