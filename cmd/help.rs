//! What `--help` and the man pages say beyond the flags: each subcommand's examples, shown
//! after `--help` and as the man pages' EXAMPLES section, and the check that every flag's
//! help exists and speaks the user's language, not the code's.

use clap::{Command, CommandFactory};

/// (what it does, the command line), per subcommand.
pub fn examples(subcommand: &str) -> &'static [(&'static str, &'static str)] {
    match subcommand {
        "nsqrs" => &[
            ("Run a broker, with a lookupd beside it, on nsqd's ports", "nsqrs serve --data-path /var/lib/nsqrs"),
            ("Publish two messages and print their IDs", "nsqrs pub --topic orders --nsqd-tcp-address 127.0.0.1:4150 one two"),
            ("Archive a topic with its lifecycle events, then trace a message", "nsqrs to-db --topic orders --nsqd-tcp-address 127.0.0.1:4150 --db orders.db --events\nnsqrs trace 18a3ea5e4ea69000 --db orders.db"),
        ],
        "serve" => &[
            ("A broker keeping its data in /var/lib/nsqrs", "nsqrs serve --data-path /var/lib/nsqrs"),
            ("Register with two lookupd, as nsqd does (no embedded lookupd then)", "nsqrs serve --lookupd-tcp-address lookupd1:4160 --lookupd-tcp-address lookupd2:4160"),
            ("Report only publishes, and only of topics starting with orders", "nsqrs serve --lifecycle-events publish --lifecycle-events-topics '^orders'"),
            ("Hold every acknowledged message on a second machine too; adopt a lost peer's messages after 30 s", "nsqrs serve --replicate-to 10.0.0.2:4150 --replicas 1 --adopt-after 30s"),
            ("Be nsqd for scripts that start nsqd, Go flag syntax included", "ln -s \"$(command -v nsqrs)\" /usr/local/bin/nsqd\nnsqd -data-path=/var/lib/nsq -mem-queue-size=0"),
        ],
        "lookupd" => &[
            ("A lookupd on nsqlookupd's ports", "nsqrs lookupd"),
            ("Shorter tombstones, and producers forgotten after 30 s of silence", "nsqrs lookupd --tombstone-lifetime 15s --inactive-producer-timeout 30s"),
        ],
        "bench" => &[
            ("Publish and consume 200-byte messages for 10 s", "nsqrs bench --nsqd-tcp-address 127.0.0.1:4150 --mode both --runfor 10s --size 200"),
            ("Publish-to-delivery latency at 10,000 messages a second", "nsqrs bench --nsqd-tcp-address 127.0.0.1:4150 --mode latency --rate 10000 --topic lat"),
        ],
        "pub" => &[
            ("Publish two messages given as arguments; print their IDs", "nsqrs pub --topic orders --nsqd-tcp-address 127.0.0.1:4150 '{\"id\":1}' '{\"id\":2}'"),
            ("Publish every line of a file, in MPUB batches", "nsqrs pub --topic numbers --nsqd-tcp-address 127.0.0.1:4150 < numbers.txt"),
            ("Deliver a message in ten minutes", "nsqrs pub --topic reminders --nsqd-tcp-address 127.0.0.1:4150 --defer 10m 'call back'"),
        ],
        "tail" => &[
            ("Show the next ten messages of a topic", "nsqrs tail --topic orders --nsqd-tcp-address 127.0.0.1:4150 -n 10"),
            ("Every nsqd lookupd knows, with each message's ID and attempts", "nsqrs tail --topic orders --lookupd-http-address http://127.0.0.1:4161 --format json"),
        ],
        "to-file" => &[
            ("Hourly gzip files of a topic in /archive", "nsqrs to-file --topic orders --nsqd-tcp-address 127.0.0.1:4150 --output-dir /archive --gzip"),
            ("Every topic lookupd knows whose name starts with app., as JSON lines (replay reads them)", "nsqrs to-file --topic-pattern '^app\\.' --lookupd-http-address 127.0.0.1:4161 --output-dir /archive --format json"),
        ],
        "stat" => &[
            ("nsq_stat's report of one channel, summed over the nsqd lookupd knows", "nsqrs stat --topic orders --channel billing --lookupd-http-address 127.0.0.1:4161"),
            ("One CSV snapshot of every topic and channel", "nsqrs stat --nsqd-http-address 127.0.0.1:4151 --format csv --count 1"),
            ("Each broker's replication peers and how far behind they are", "nsqrs stat --replication --lookupd-http-address 127.0.0.1:4161"),
        ],
        "to-db" => &[
            ("Archive a topic and its lifecycle events into SQLite", "nsqrs to-db --topic orders --nsqd-tcp-address 127.0.0.1:4150 --db orders.db --events"),
            ("The same topic, from every nsqd, into PostgreSQL", "nsqrs to-db --topic orders --lookupd-http-address 127.0.0.1:4161 --db postgres://archiver@db.local/history --events"),
        ],
        "trace" => &[
            ("A message's history: where it was published, and each delivery, requeue and finish", "nsqrs trace 18a3ea5e4ea69000 --db orders.db"),
            ("Find it by a field of its JSON body", "nsqrs trace --db orders.db --where customer=42 --since 2h"),
            ("With the broker's view of it now, as JSON", "nsqrs trace 18a3ea5e4ea69000 --db orders.db --nsqd-http-address 127.0.0.1:4151 --format json"),
        ],
        "replay" => &[
            ("Republish two hours of a topic to another topic", "nsqrs replay --topic orders --since 2h --to-topic orders_fix --db orders.db --nsqd-tcp-address 127.0.0.1:4150"),
            ("Say what one hour would replay, sending nothing", "nsqrs replay --topic orders --since 2026-03-01T10:00:00Z --until 2026-03-01T11:00:00Z --db orders.db --dry-run"),
            ("Replay from to-file's JSON files instead of an archive", "nsqrs replay --topic orders --since 24h --from-file /archive/orders.host-000000.2026-03-01_10.log --db runs.db --nsqd-tcp-address 127.0.0.1:4150"),
        ],
        "to-nsq" => &[
            ("Copy a topic to a broker in another datacenter", "nsqrs to-nsq --topic orders --nsqd-tcp-address 127.0.0.1:4150 --destination-nsqd-tcp-address dc2-nsqd:4150"),
            ("Only signups, only two fields, shared between two brokers", "nsqrs to-nsq --topic events --lookupd-http-address 127.0.0.1:4161 --destination-nsqd-tcp-address a:4150 --destination-nsqd-tcp-address b:4150 --mode round-robin --require-json-field type --require-json-value signup --whitelist-json-field type --whitelist-json-field user"),
        ],
        "to-http" => &[
            ("POST every message of a topic as JSON", "nsqrs to-http --topic orders --nsqd-tcp-address 127.0.0.1:4150 --post https://billing.local/orders --content-type application/json"),
            ("GET a URL with the message in it, ten at a time", "nsqrs to-http --topic pings --nsqd-tcp-address 127.0.0.1:4150 --get 'http://hooks.local/ping?m=%s' -n 10"),
        ],
        "admin" => &[
            ("The web UI of a cluster, reading two lookupd", "nsqrs admin --lookupd-http-address lookupd1:4161 --lookupd-http-address lookupd2:4161"),
            ("With archived messages to search and replay, and actions behind a token", "nsqrs admin --nsqd-http-address 127.0.0.1:4151 --db orders.db --http-admin-token s3cret"),
        ],
        "adopt" => &[
            ("Deliver a lost broker's replicated messages from the broker holding its copy", "nsqrs adopt --node 10.0.0.1:4150 --nsqd-http-address 10.0.0.2:4151"),
            ("The same, when the adopter's admin endpoints need a token", "nsqrs adopt --node 10.0.0.1:4150 --nsqd-http-address 10.0.0.2:4151 --http-admin-token \"$TOKEN\""),
        ],
        "topic" => &[
            ("Pause a topic on every broker that holds it", "nsqrs topic pause orders --lookupd-http-address 127.0.0.1:4161"),
            ("Delete a topic from the whole cluster, in the safe order", "nsqrs topic delete orders --lookupd-http-address 127.0.0.1:4161"),
        ],
        "channel" => &[
            ("Empty a channel on one broker", "nsqrs channel empty orders billing --nsqd-http-address 127.0.0.1:4151"),
            ("Create a channel everywhere its topic lives, before its consumers start", "nsqrs channel create orders audit --lookupd-http-address 127.0.0.1:4161"),
        ],
        _ => &[],
    }
}

/// The examples as `--help` shows them after the flags.
fn examples_text(subcommand: &str) -> Option<String> {
    let list = examples(subcommand);
    if list.is_empty() {
        return None;
    }
    let mut out = String::from("Examples:\n");
    for (what, line) in list {
        out.push_str(&format!("  # {what}\n"));
        for l in line.lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    Some(out.trim_end().to_string())
}

/// The command line as `nsqrs` parses it and documents it: the derived definitions with each
/// subcommand's examples after its long help.
pub fn command() -> Command {
    let mut cmd = crate::Cli::command();
    if let Some(text) = examples_text("nsqrs") {
        cmd = cmd.after_long_help(text);
    }
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in names {
        if let Some(text) = examples_text(&name) {
            cmd = cmd.mut_subcommand(&name, |sub| sub.after_long_help(text));
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command a user can start: the subcommands, and the binary as nsqd and nsqlookupd.
    fn every_command() -> Vec<Command> {
        let mut all: Vec<Command> = command().get_subcommands().cloned().collect();
        all.push(crate::serve::nsqd_command());
        all.push(crate::lookupd::nsqlookupd_command());
        all
    }

    #[test]
    fn every_flag_says_what_it_does() {
        let mut missing = Vec::new();
        for cmd in every_command() {
            for arg in cmd.get_arguments() {
                if arg.is_hide_set() || arg.get_id() == "help" {
                    continue;
                }
                let said = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if said.trim().is_empty() {
                    missing.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    #[test]
    fn help_speaks_the_users_language() {
        // The code's words: paths, calls, and type names (a lowercase letter followed by a
        // capital, as in NsqdOptions; the products below are spelled that way too).
        let allowed = ["PostgreSQL", "SQLite", "KiB", "MiB", "GiB"];
        let mut found = Vec::new();
        for mut cmd in every_command() {
            let text = cmd.render_long_help().to_string();
            for word in text.split(|c: char| !c.is_alphanumeric() && c != ':' && c != '(' && c != ')') {
                let camel = word
                    .as_bytes()
                    .windows(2)
                    .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
                if word.contains("::") || word.ends_with("()") || camel && !allowed.contains(&word) {
                    found.push(format!("{}: {word}", cmd.get_name()));
                }
            }
        }
        assert!(found.is_empty(), "the code's words in --help: {found:?}");
    }

    #[test]
    fn examples_use_flags_that_exist() {
        for cmd in command().get_subcommands() {
            let examples = examples(cmd.get_name());
            assert!(!examples.is_empty(), "{} has no examples", cmd.get_name());
            for (_, line) in examples {
                for l in line.lines().filter(|l| l.starts_with("nsqrs ")) {
                    let argv = shell_words(l);
                    assert_eq!(argv[1], cmd.get_name(), "{l}");
                    let argv = crate::normalize_subcommand_args(argv);
                    if let Err(e) = command().try_get_matches_from(&argv) {
                        panic!("{l}: {e}");
                    }
                }
            }
        }
    }

    /// Enough of sh's quoting for the examples: single and double quotes, backslashes.
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quote = None;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, ' ') => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('"') | None, '\\') => word.extend(chars.next()),
                (_, c) => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        words
    }
}
