//! The one wrapper of a process a test starts: its stderr is echoed (labelled, so the output of
//! a failed test tells the processes apart) and kept line by line, it stops with SIGTERM and a
//! bounded wait or with SIGKILL, and it is killed when dropped, so no test leaves one behind.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Every stderr line a process has written so far.
pub type Log = Arc<Mutex<Vec<String>>>;

pub struct Daemon {
    child: Child,
    label: &'static str,
    pub log: Log,
    /// Lines not yet looked at by `listeners`; in a mutex so a `Daemon` can be shared
    /// between threads.
    lines: Mutex<mpsc::Receiver<String>>,
    /// The thread copying stderr into `log`; it ends when the process's stderr closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `cmd` with stderr captured (stdout is left as the command set it, or null).
    pub fn spawn(mut cmd: Command, label: &'static str) -> Daemon {
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        let log = Log::default();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Daemon {
            child,
            label,
            log,
            lines: Mutex::new(lines),
            reader: Some(reader),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads stderr lines as they come until every one of `required` has been seen as
    /// `"<name>: listening on <addr>"`, and returns each name's first address (`optional`
    /// ones too, if they came before). Killed, with a panic, if that takes over 20 s.
    pub fn listeners(&mut self, required: &[&str], optional: &[&str]) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !required.iter().all(|r| found.iter().any(|(n, _)| n == r)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.lock().unwrap().recv_timeout(left);
            let line = line.unwrap_or_else(|_| {
                self.kill9();
                panic!("{} did not report its listeners", self.label)
            });
            for name in required.iter().chain(optional) {
                let marker = format!("{name}: listening on ");
                if let Some(addr) = line.split(marker.as_str()).nth(1) {
                    if !found.iter().any(|(n, _)| n == name) {
                        found.push((name.to_string(), addr.trim().to_string()));
                    }
                }
            }
        }
        found
    }

    /// Sends `signal` (SIGHUP, say) without waiting for anything.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then the exit status (`None` for a death by signal); an error, having killed
    /// it, when it did not exit within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Result<Option<i32>, String> {
        self.signal(libc::SIGTERM);
        self.wait(limit)
    }

    /// SIGKILL, and reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status once it has exited within `limit`, with all it wrote to stderr in
    /// `log`; an error, having killed it, otherwise.
    pub fn wait(&mut self, limit: Duration) -> Result<Option<i32>, String> {
        let code = wait_exit(&mut self.child, limit)?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok(code)
    }

    /// Everything written to stderr so far, one line each.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits for `child` to exit: its status code, or an error (having killed it) past `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Result<Option<i32>, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not exit within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `nsqrs args...` with `stdin`, killing it if it outlives `limit`.
pub fn run_tool(args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut child = Command::new(crate::bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    wait_bounded(child, limit)
}

/// Waits for `child` to exit and collects its output; SIGKILL and a panic past `limit`.
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    // Output is collected on a thread while we wait, so a chatty child never blocks on a full pipe.
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "nsqrs did not exit within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
