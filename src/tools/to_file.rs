//! `nsqrs to-file`'s archiver: nsq_to_file's (nsq-reference §4.2), one file logger per topic.
//!
//! The contract is at-least-once to disk: a message is finished only after the bytes holding
//! it are fsync'ed, so a crash anywhere can duplicate messages in the archive but never lose
//! one. Files are written in the work dir and moved to the output dir when closed, with
//! link()+unlink() so an existing archive file is never overwritten (the REV is bumped).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use flate2::write::GzEncoder;
use flate2::Compression;
use regex::Regex;
use tokio::sync::watch;

use crate::client::{lookup, Config, Consumer, Message};
use crate::common::console::count;
use crate::common::http_client::HttpTimeouts;
use crate::common::process::wait_for_signal;
use crate::errln;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// The body and a newline, as nsq_to_file writes it
    Raw,
    /// One JSON object a line: id, timestamp, attempts, body
    Json,
}

/// Everything a file logger needs, resolved once.
#[derive(Debug)]
pub struct Settings {
    pub output_dir: PathBuf,
    pub work_dir: PathBuf,
    pub datetime_format: String,
    /// The template with <HOST> and <PID> already filled in.
    pub filename_format: String,
    pub gzip_level: Option<u32>,
    pub rotate_size: u64,
    pub rotate_interval: Option<Duration>,
    pub skip_empty_files: bool,
    pub sync_interval: Duration,
    pub max_in_flight: usize,
    pub format: FileFormat,
    pub needs_rev: bool,
    /// Create files O_EXCL (bumping REV on conflict) rather than appending.
    pub exclusive: bool,
    pub verbose: bool,
    pub log_prefix: String,
}

/// Where messages come from: named topics, or every topic lookupd knows (matching the
/// caller's pattern) when none are named.
#[derive(Debug, Clone)]
pub struct Sources {
    pub topics: Vec<String>,
    /// How often lookupd is asked for new topics when `topics` is empty.
    pub topic_refresh: Duration,
    pub channel: String,
    pub nsqd_tcp_address: Vec<String>,
    pub lookupd_http_address: Vec<String>,
    pub timeouts: HttpTimeouts,
}

/// Why a run ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveError {
    /// A named topic cannot be consumed as given: the command line's fault.
    Usage(String),
    /// Connecting, writing or syncing failed.
    Failed(String),
}

impl Settings {
    pub fn log(&self, msg: impl std::fmt::Display) {
        if self.verbose {
            errln!("{}{msg}", self.log_prefix);
        }
    }
}

/// The strftime conversions nsq_to_file's strftime package knows.
const DATETIME_SPECIFIERS: &str = "YymdHIMSpAaBbZz%";

/// Checks a `--datetime-format` against the conversions nsq_to_file knows.
pub fn check_datetime_format(f: &str) -> Result<(), String> {
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some(s) if DATETIME_SPECIFIERS.contains(s) => {}
                Some(s) => return Err(format!("--datetime-format: %{s} is not supported")),
                None => return Err("--datetime-format: ends with a lone %".into()),
            }
        }
    }
    Ok(())
}

/// Starts a logger per topic (discovering topics through lookupd when none are named) and
/// runs until SIGINT/SIGTERM, then drains: every logger syncs, finishes and closes its files.
pub async fn archive(
    sources: Sources,
    settings: Arc<Settings>,
    pattern: Option<Regex>,
    config: Config,
) -> Result<(), ArchiveError> {
    let (hup_tx, _) = watch::channel(0u64);
    let hup_tx = Arc::new(hup_tx);
    let mut loggers: HashMap<String, (Consumer, tokio::task::JoinHandle<Result<(), String>>)> =
        HashMap::new();
    let timeouts = sources.timeouts;
    let discover = sources.topics.is_empty();
    let mut refresh = tokio::time::interval(sources.topic_refresh.max(Duration::from_millis(10)));
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| ArchiveError::Failed(format!("signal handlers: {e}")))?;
    let term = wait_for_signal();
    tokio::pin!(term);
    let mut failure: Option<String> = None;

    let start = |topic: &str, loggers: &mut HashMap<_, _>| -> Result<(), String> {
        let consumer = Consumer::new(topic, &sources.channel, config.clone())?;
        let logger = FileLogger::new(topic, settings.clone());
        let task = tokio::spawn(logger.run(consumer.clone(), hup_tx.subscribe()));
        loggers.insert(topic.to_string(), (consumer, task));
        Ok(())
    };

    if !discover {
        for topic in &sources.topics {
            start(topic, &mut loggers).map_err(ArchiveError::Usage)?;
        }
    }
    let mut connected: std::collections::HashSet<String> = Default::default();
    loop {
        // Connect loggers started since the last pass.
        for (topic, (consumer, _)) in &loggers {
            if connected.contains(topic) {
                continue;
            }
            connected.insert(topic.clone());
            for addr in &sources.nsqd_tcp_address {
                if let Err(e) = consumer.connect_to_nsqd(addr).await {
                    failure = Some(format!("connect to nsqd {addr}: {e}"));
                }
            }
            for addr in &sources.lookupd_http_address {
                let _ = consumer.connect_to_lookupd(addr).await;
            }
        }
        if failure.is_some() {
            break;
        }
        tokio::select! {
            signalled = &mut term => {
                failure = signalled.err().map(|e| format!("signal handlers: {e}"));
                break;
            }
            _ = hup.recv() => {
                settings.log("SIGHUP: closing files");
                hup_tx.send_modify(|n| *n += 1);
            }
            _ = refresh.tick(), if discover => {
                for l in &sources.lookupd_http_address {
                    match lookup::topics(l, timeouts).await {
                        Ok(topics) => {
                            for t in topics {
                                let wanted = pattern.as_ref().is_none_or(|p| p.is_match(&t));
                                if wanted && !loggers.contains_key(&t) {
                                    settings.log(format!("discovered topic {t}"));
                                    if let Err(e) = start(&t, &mut loggers) {
                                        settings.log(format!("topic {t}: {e}"));
                                    }
                                }
                            }
                        }
                        Err(e) => settings.log(format!("lookupd {l}: {e}")),
                    }
                }
            }
        }
        // A logger that failed (disk error) ends the run.
        if let Some((t, _)) = loggers.iter().find(|(_, (_, task))| task.is_finished()) {
            failure = Some(format!("topic {t}: logger stopped"));
            break;
        }
    }
    // Graceful drain: consumers stop taking messages and wait for the loggers to finish
    // what they hold, which they do once their consumer reports the stop.
    let stops: Vec<_> = loggers
        .values()
        .map(|(c, _)| {
            let c = c.clone();
            tokio::spawn(async move { c.stop().await })
        })
        .collect();
    for (topic, (_, task)) in loggers {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(format!("topic {topic}: {e}")),
            Err(e) => failure = Some(format!("topic {topic}: {e}")),
        }
    }
    for s in stops {
        let _ = s.await;
    }
    failure.map_or(Ok(()), |e| Err(ArchiveError::Failed(e)))
}

/// The file being written. With gzip, a member is open from the first write after a sync
/// until the next sync, so no empty members are written.
struct Output {
    file: Option<File>,
    gz: Option<GzEncoder<File>>,
    work_path: PathBuf,
    size: u64,
    opened: Instant,
}

impl Output {
    fn write(&mut self, data: &[u8], gzip_level: Option<u32>) -> io::Result<()> {
        if let Some(level) = gzip_level {
            if self.gz.is_none() {
                let file = self.file.take().expect("file present between members");
                self.gz = Some(GzEncoder::new(file, Compression::new(level)));
            }
            self.gz.as_mut().expect("member open").write_all(data)
        } else {
            self.file.as_mut().expect("file open").write_all(data)
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(gz) = self.gz.take() {
            self.file = Some(gz.finish()?);
        }
        self.file.as_ref().expect("file open").sync_data()
    }
}

/// Writes one topic's messages to rotating files and finishes them after fsync.
struct FileLogger {
    topic: String,
    s: Arc<Settings>,
    out: Option<Output>,
    datetime: String,
    rev: u32,
    pending: Vec<Message>,
}

impl FileLogger {
    fn new(topic: &str, s: Arc<Settings>) -> FileLogger {
        FileLogger {
            topic: topic.to_string(),
            s,
            out: None,
            datetime: String::new(),
            rev: 0,
            pending: Vec::new(),
        }
    }

    async fn run(mut self, consumer: Consumer, mut hup: watch::Receiver<u64>) -> Result<(), String> {
        let mut ticker = tokio::time::interval(self.s.sync_interval);
        ticker.tick().await;
        let result = loop {
            let mut sync = false;
            let mut close = false;
            let mut exit = false;
            let step: io::Result<()> = tokio::select! {
                m = consumer.recv() => match m {
                    None => {
                        sync = true;
                        close = true;
                        exit = true;
                        Ok(())
                    }
                    Some(m) => self.on_message(m),
                },
                _ = ticker.tick() => {
                    sync = true;
                    self.on_tick()
                }
                _ = hup.changed() => {
                    sync = true;
                    close = true;
                    Ok(())
                }
            };
            let mut step = step;
            // go-nsq calls a consumer starved at 85% of its RDY in flight; waiting longer
            // would only stall it.
            let starved = self.pending.len() as f64 >= 0.85 * self.s.max_in_flight as f64;
            if step.is_ok() && (sync || starved || self.pending.len() >= self.s.max_in_flight) {
                step = tokio::task::block_in_place(|| self.sync());
            }
            if step.is_ok() && close {
                step = tokio::task::block_in_place(|| self.close());
            }
            if let Err(e) = step {
                break Err(e.to_string());
            }
            if exit {
                break Ok(());
            }
        };
        if result.is_err() {
            // Whatever was not made durable goes back to nsqd as the messages drop.
            self.pending.clear();
            consumer.stop().await;
        }
        result
    }

    fn on_message(&mut self, m: Message) -> io::Result<()> {
        if self.out.is_some() && self.needs_rotation() {
            tokio::task::block_in_place(|| self.close())?;
        }
        if self.out.is_none() {
            self.open()?;
        }
        let line = self.render(&m);
        let out = self.out.as_mut().expect("opened above");
        out.write(&line, self.s.gzip_level)?;
        out.size += line.len() as u64;
        self.pending.push(m);
        Ok(())
    }

    fn on_tick(&mut self) -> io::Result<()> {
        if self.out.is_some() && self.needs_rotation() {
            tokio::task::block_in_place(|| self.close())?;
            if !self.s.skip_empty_files {
                self.open()?;
            }
        }
        Ok(())
    }

    fn render(&self, m: &Message) -> Vec<u8> {
        match self.s.format {
            FileFormat::Raw => {
                let mut v = Vec::with_capacity(m.body.len() + 1);
                v.extend_from_slice(&m.body);
                v.push(b'\n');
                v
            }
            FileFormat::Json => {
                let (body, is_base64) = crate::protocol::body_text(&m.body);
                let mut v = serde_json::to_vec(&serde_json::json!({
                    "id": m.id_str(),
                    "timestamp": m.timestamp_ns,
                    "attempts": m.attempts,
                    "body": body,
                    "body_base64": is_base64,
                }))
                .expect("JSON of plain values");
                v.push(b'\n');
                v
            }
        }
    }

    fn current_datetime(&self) -> String {
        chrono::Local::now().format(&self.s.datetime_format).to_string()
    }

    fn filename(&self, datetime: &str, rev: u32) -> String {
        let rev = if self.s.needs_rev {
            format!("-{rev:06}")
        } else {
            String::new()
        };
        let mut name = self
            .s
            .filename_format
            .replace("<TOPIC>", &self.topic)
            .replace("<DATETIME>", datetime)
            .replace("<REV>", &rev);
        if self.s.gzip_level.is_some() && !name.ends_with(".gz") {
            name.push_str(".gz");
        }
        name
    }

    fn needs_rotation(&self) -> bool {
        let Some(out) = &self.out else { return false };
        self.current_datetime() != self.datetime
            || self.s.rotate_interval.is_some_and(|i| out.opened.elapsed() >= i)
            || (self.s.rotate_size > 0 && out.size > self.s.rotate_size)
    }

    fn open(&mut self) -> io::Result<()> {
        let datetime = self.current_datetime();
        if datetime != self.datetime {
            self.datetime = datetime;
            self.rev = 0;
        }
        let (file, path) = loop {
            let path = self.s.work_dir.join(self.filename(&self.datetime, self.rev));
            let mut opts = OpenOptions::new();
            opts.write(true);
            if self.s.exclusive {
                opts.create_new(true);
            } else {
                opts.create(true).append(true);
            }
            match opts.open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.s.exclusive => self.rev += 1,
                Err(e) => return Err(io::Error::new(e.kind(), format!("open {}: {e}", path.display()))),
            }
        };
        self.s.log(format!("opening {}", path.display()));
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A gzip file with no member is not gzip (`zcat` refuses it), and one may be left
        // behind by a file closed before any message, or by a crash right after opening:
        // each file opens with an empty member, so it is valid from its first byte.
        let file = match self.s.gzip_level {
            Some(level) => GzEncoder::new(file, Compression::new(level)).finish()?,
            None => file,
        };
        self.out = Some(Output {
            file: Some(file),
            gz: None,
            work_path: path,
            size,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Makes everything written durable, then finishes the messages it holds. With gzip the
    /// current member is closed first, so a crash can only truncate the member after it.
    fn sync(&mut self) -> io::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.sync()?;
        }
        if !self.pending.is_empty() {
            self.s.log(format!(
                "[{}] syncing {} to disk",
                self.topic,
                count(self.pending.len(), "record")
            ));
        }
        for m in self.pending.drain(..) {
            m.finish();
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        self.sync()?;
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        drop(out.file);
        if self.s.work_dir != self.s.output_dir {
            self.move_to_output(&out.work_path)?;
        } else {
            self.s.log(format!("closing {}", out.work_path.display()));
        }
        // The next file in the same period takes the next REV.
        self.rev += 1;
        Ok(())
    }

    /// link()+unlink(): the move fails rather than replace an existing file, and the REV is
    /// bumped until a free name is found.
    fn move_to_output(&mut self, src: &Path) -> io::Result<()> {
        loop {
            let dst = self.s.output_dir.join(self.filename(&self.datetime, self.rev));
            match std::fs::hard_link(src, &dst) {
                Ok(()) => {
                    std::fs::remove_file(src)?;
                    self.s
                        .log(format!("moved {} to {}", src.display(), dst.display()));
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.rev += 1,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("move {} to {}: {e}", src.display(), dst.display()),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_formats_are_checked() {
        assert!(check_datetime_format("%Y-%m-%d_%H %I%p %a %A %b %B %Z %z %%").is_ok());
        assert!(check_datetime_format("%Q").unwrap_err().contains("%Q"));
        assert!(check_datetime_format("x%").is_err());
    }
}
