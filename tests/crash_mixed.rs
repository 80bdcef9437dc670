//! Repeated `kill -9` under mixed load: PUB, MPUB and DPUB into one topic read by two channels,
//! whose consumers FIN, REQ (with and without a delay) and let messages time out, while the
//! broker is killed at random moments and restarted on the same data directory. Checked:
//!
//! - no acknowledged message is lost: after the last restart every message whose PUB/MPUB/DPUB
//!   was answered `OK` is finished on both channels;
//! - nothing comes before its time: no DPUB before its delay, no message requeued with a delay
//!   (REQ the broker had processed) before its due time, across crashes too;
//! - duplicates stay within the README's bound: a message the broker had finished comes back
//!   only after a crash, and only if it was finished within the last checkpoint interval
//!   (200 ms) before the kill. The test allows the checkpoint thread 800 ms of lateness on top,
//!   because CI shares its machine with CPU hogs.
//!
//! FIN and REQ have no reply, so a consumer follows them with a FIN of an ID nobody holds: its
//! error reply shows that everything sent before it was processed. Only processed commands
//! count (a REQ the broker never read may of course come back at once); a message whose FIN
//! was sent just before a kill and not confirmed may be finished or may come back, so it
//! counts as finished unless it comes back.
//!
//! CI runs a small fixed budget; `NSQRS_CRASH_ROUNDS=N` runs longer and `NSQRS_CRASH_SEED=S`
//! repeats a run (the seed is printed; see docs/testing.md).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nsqrs_testkit::Nsqd;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "mixed";
const CHANNELS: [&str; 2] = ["a", "b"];
/// The README's bound: finished within one checkpoint interval before the crash.
const CHECKPOINT_US: i64 = 200_000;
/// How late a starved checkpoint thread may run on a shared CI machine.
const SCHEDULING_SLACK_US: i64 = 800_000;
const BARRIER: &str = "FIN 0000000000000000\n";
const DEFAULT_ROUNDS: usize = 5;

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// A fallible protocol V2 connection: the broker may vanish at any moment.
struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
}

enum Frame {
    Response(Vec<u8>),
    Error(String),
    Message { id: String, body: String },
}

impl Wire {
    fn connect(addr: &str) -> std::io::Result<Wire> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        s.write_all(b"  V2")?;
        Ok(Wire { s, buf: Vec::new() })
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    fn send_body(&mut self, line: &str, body: &[u8]) -> std::io::Result<()> {
        let mut out = format!("{line}\n").into_bytes();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        self.send(&out)
    }

    /// The next frame; Ok(None) when none arrived within the read timeout; Err once the
    /// connection is gone.
    fn frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if self.buf.len() >= 8 {
                let size = u32::from_be_bytes(self.buf[0..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + size {
                    let kind = i32::from_be_bytes(self.buf[4..8].try_into().unwrap());
                    let data = self.buf[8..4 + size].to_vec();
                    self.buf.drain(..4 + size);
                    match kind {
                        0 if data == b"_heartbeat_" => {
                            self.send(b"NOP\n")?;
                            continue;
                        }
                        0 => return Ok(Some(Frame::Response(data))),
                        1 => return Ok(Some(Frame::Error(String::from_utf8_lossy(&data).into_owned()))),
                        _ => {
                            return Ok(Some(Frame::Message {
                                id: String::from_utf8_lossy(&data[10..26]).into_owned(),
                                body: String::from_utf8_lossy(&data[26..]).into_owned(),
                            }))
                        }
                    }
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

#[derive(Default)]
struct ChannelLedger {
    /// Due times of processed REQs with a delay (µs since the epoch).
    not_before: HashMap<String, i64>,
    /// Processed FINs: when the FIN was sent, and in which round (broker run).
    finished: HashMap<String, (i64, usize)>,
    /// FINs sent when the broker was killed, before their confirmation came back: the broker
    /// may or may not have processed them, so such a message may or may not come back.
    maybe_finished: BTreeSet<String>,
    /// What happened to each message on this channel, for the failure report.
    history: HashMap<String, Vec<String>>,
}

impl ChannelLedger {
    fn note(&mut self, body: &str, round: usize, what: &str) {
        self.history
            .entry(body.to_string())
            .or_default()
            .push(format!("run {round}: {what}"));
    }
}

#[derive(Default)]
struct Ledger {
    acked: BTreeSet<String>,
    /// DPUB bodies: not deliverable before (µs).
    due: HashMap<String, i64>,
    channels: [ChannelLedger; 2],
    /// When round i's broker was killed (µs).
    kills: Vec<i64>,
    problems: Vec<String>,
    duplicates: usize,
    deliveries: usize,
}

/// A FIN or REQ sent but not yet known to be processed.
enum Pending {
    Fin { id: String, body: String, sent_us: i64 },
    Req { id: String, body: String, due_us: i64 },
}

impl Pending {
    fn id(&self) -> &str {
        match self {
            Pending::Fin { id, .. } | Pending::Req { id, .. } => id,
        }
    }
}

struct Consumer {
    addr: String,
    channel: usize,
    round: usize,
    /// Finish everything (the last run, after the crashes).
    drain: bool,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    seed: u64,
}

impl Consumer {
    fn run(self) {
        let mut pending: VecDeque<(u64, Pending)> = VecDeque::new();
        self.consume(&mut pending);
        let mut ledger = self.ledger.lock().unwrap();
        for (_, p) in pending {
            if let Pending::Fin { body, .. } = p {
                let ch = &mut ledger.channels[self.channel];
                ch.note(&body, self.round, "FIN not confirmed when the broker died");
                ch.maybe_finished.insert(body);
            }
        }
    }

    fn consume(&self, pending: &mut VecDeque<(u64, Pending)>) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let Ok(mut w) = Wire::connect(&self.addr) else {
            return;
        };
        let sub = format!("SUB {TOPIC} {}\nRDY 200\n", CHANNELS[self.channel]);
        if w.send(sub.as_bytes()).is_err() {
            return;
        }
        let mut next_seq = 0u64;
        // For each barrier in flight: the pending entries sent before it are those below this.
        let mut barriers: VecDeque<u64> = VecDeque::new();
        let mut last_barrier = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let frame = match w.frame() {
                Ok(f) => f,
                Err(_) => return,
            };
            match frame {
                None | Some(Frame::Response(_)) => {}
                Some(Frame::Error(e)) if e.contains("0000000000000000") => {
                    let Some(upto) = barriers.pop_front() else {
                        self.problem(format!("barrier reply with no barrier: {e}"));
                        continue;
                    };
                    let mut ledger = self.ledger.lock().unwrap();
                    while pending.front().is_some_and(|(seq, _)| *seq < upto) {
                        let (_, p) = pending.pop_front().unwrap();
                        let ch = &mut ledger.channels[self.channel];
                        match p {
                            Pending::Fin { body, sent_us, .. } => {
                                ch.note(&body, self.round, "FIN processed");
                                ch.finished.insert(body, (sent_us, self.round));
                            }
                            Pending::Req { body, due_us, .. } => {
                                ch.note(&body, self.round, "REQ with delay processed");
                                ch.not_before.insert(body, due_us);
                            }
                        }
                    }
                }
                // A FIN or REQ that came too late (the message had timed out): not processed.
                Some(Frame::Error(e)) if e.starts_with("E_FIN_FAILED") || e.starts_with("E_REQ_FAILED") => {
                    let id = e.split_whitespace().nth(2).unwrap_or_default().to_string();
                    pending.retain(|(_, p)| p.id() != id);
                }
                Some(Frame::Error(e)) => self.problem(format!("unexpected error frame {e}")),
                Some(Frame::Message { id, body }) => {
                    self.check_delivery(&body);
                    let roll = if self.drain { 0 } else { rng.gen_range(0..100) };
                    let action = match roll {
                        0..=79 => "delivered, FIN sent",
                        80..=84 => "delivered, REQ 0 sent",
                        85..=94 => "delivered, REQ with delay sent",
                        _ => "delivered, left to time out",
                    };
                    self.ledger.lock().unwrap().channels[self.channel].note(&body, self.round, action);
                    let sent = match roll {
                        0..=79 => {
                            let sent_us = now_us();
                            pending.push_back((
                                next_seq,
                                Pending::Fin {
                                    id: id.clone(),
                                    body,
                                    sent_us,
                                },
                            ));
                            w.send(format!("FIN {id}\n").as_bytes())
                        }
                        80..=84 => w.send(format!("REQ {id} 0\n").as_bytes()),
                        // Long enough to outlast a restart, so a delay lost in a crash shows.
                        85..=94 => {
                            let delay_ms: i64 = rng.gen_range(1000..4000);
                            let due_us = now_us() + delay_ms * 1000;
                            pending.push_back((
                                next_seq,
                                Pending::Req {
                                    id: id.clone(),
                                    body,
                                    due_us,
                                },
                            ));
                            w.send(format!("REQ {id} {delay_ms}\n").as_bytes())
                        }
                        // Left alone: it times out and comes back.
                        _ => Ok(()),
                    };
                    next_seq += 1;
                    if sent.is_err() {
                        return;
                    }
                }
            }
            let unconfirmed = pending
                .back()
                .is_some_and(|(seq, _)| barriers.back().is_none_or(|b| seq >= b));
            if unconfirmed && last_barrier.elapsed() >= Duration::from_millis(20) {
                barriers.push_back(next_seq);
                last_barrier = Instant::now();
                if w.send(BARRIER.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }

    fn problem(&self, text: String) {
        self.ledger.lock().unwrap().problems.push(text);
    }

    /// A delivery must not come before its due time, nor after a FIN the broker processed
    /// unless a crash within the bound came between.
    fn check_delivery(&self, body: &str) {
        let now = now_us();
        let mut ledger = self.ledger.lock().unwrap();
        ledger.deliveries += 1;
        let name = CHANNELS[self.channel];
        let dpub_due = ledger.due.get(body).copied().unwrap_or(0);
        let ch = &mut ledger.channels[self.channel];
        let due = dpub_due.max(ch.not_before.get(body).copied().unwrap_or(0));
        let finished = ch.finished.remove(body);
        ch.maybe_finished.remove(body);
        if now < due {
            let early = (due - now) / 1000;
            ledger
                .problems
                .push(format!("{name}: {body} delivered {early} ms before its due time"));
        }
        if let Some((fin_us, fin_round)) = finished {
            if fin_round == self.round {
                ledger.problems.push(format!(
                    "{name}: {body} finished, then delivered again without a crash"
                ));
            } else {
                let kill = ledger.kills[fin_round];
                if fin_us < kill - CHECKPOINT_US - SCHEDULING_SLACK_US {
                    let before = (kill - fin_us) / 1000;
                    ledger.problems.push(format!(
                        "{name}: {body} finished {before} ms before the crash of run {fin_round}, delivered again"
                    ));
                } else {
                    ledger.duplicates += 1;
                }
            }
        }
    }
}

/// Publishes PUB, MPUB and DPUB until stopped or the broker is gone; records what was answered OK.
fn publish(addr: String, round: usize, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(mut w) = Wire::connect(&addr) else { return };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.gen_range(0..100);
        let mut bodies = Vec::new();
        let sent = if roll < 50 {
            bodies.push(format!("r{round}-{n}-pub"));
            w.send_body(&format!("PUB {TOPIC}"), bodies[0].as_bytes())
        } else if roll < 80 {
            let count = rng.gen_range(2..20);
            bodies.extend((0..count).map(|i| format!("r{round}-{n}.{i}-mpub")));
            let mut body = (count as u32).to_be_bytes().to_vec();
            for b in &bodies {
                body.extend_from_slice(&(b.len() as u32).to_be_bytes());
                body.extend_from_slice(b.as_bytes());
            }
            w.send_body(&format!("MPUB {TOPIC}"), &body)
        } else {
            let delay_ms: i64 = rng.gen_range(200..4000);
            bodies.push(format!("r{round}-{n}-dpub"));
            // Recorded before sending: the broker's due time is at least this.
            let due = now_us() + delay_ms * 1000;
            ledger.lock().unwrap().due.insert(bodies[0].clone(), due);
            w.send_body(&format!("DPUB {TOPIC} {delay_ms}"), bodies[0].as_bytes())
        };
        n += 1;
        if sent.is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match w.frame() {
                Ok(Some(Frame::Response(r))) if r == b"OK" => {
                    ledger.lock().unwrap().acked.extend(bodies);
                    break;
                }
                Ok(Some(Frame::Response(_))) => {}
                Ok(Some(other)) => {
                    let text = match other {
                        Frame::Error(e) => e,
                        _ => "a message".into(),
                    };
                    ledger
                        .lock()
                        .unwrap()
                        .problems
                        .push(format!("publish answered {text}"));
                    return;
                }
                Ok(None) if Instant::now() < deadline && !stop.load(Ordering::Relaxed) => {}
                Ok(None) | Err(_) => return,
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..6)));
    }
}

fn start_consumers(
    n: &Nsqd,
    round: usize,
    drain: bool,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<AtomicBool>,
    rng: &mut StdRng,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CHANNELS.len())
        .map(|channel| {
            let consumer = Consumer {
                addr: n.tcp.clone(),
                channel,
                round,
                drain,
                ledger: ledger.clone(),
                stop: stop.clone(),
                seed: rng.gen(),
            };
            std::thread::spawn(move || consumer.run())
        })
        .collect()
}

#[test]
fn repeated_kill_9_under_mixed_load_loses_nothing_and_keeps_every_due_time() {
    let rounds: usize = std::env::var("NSQRS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let seed: u64 = std::env::var("NSQRS_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash_mixed: {rounds} kills, NSQRS_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--msg-timeout=2s"];
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..rounds {
        let n = Nsqd::start_in(tmp.path(), &args);
        if round == 0 {
            n.post(&format!("/topic/create?topic={TOPIC}"), b"");
            for ch in CHANNELS {
                let (code, body) = n.post(&format!("/channel/create?topic={TOPIC}&channel={ch}"), b"");
                assert_eq!(code, 200, "{body}");
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = start_consumers(&n, round, false, &ledger, &stop, &mut rng);
        let (addr, l, s, publisher_seed) = (n.tcp.clone(), ledger.clone(), stop.clone(), rng.gen());
        threads.push(std::thread::spawn(move || {
            publish(addr, round, l, s, publisher_seed)
        }));
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        ledger.lock().unwrap().kills.push(now_us());
        drop(n.kill9());
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
    }

    // The last run: finish everything, then listen a little longer for stray duplicates.
    let n = Nsqd::start_in(tmp.path(), &args);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = start_consumers(&n, rounds, true, &ledger, &stop, &mut rng);
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = |ledger: &Ledger| -> Vec<(usize, Vec<String>)> {
        (0..CHANNELS.len())
            .map(|c| {
                let ch = &ledger.channels[c];
                let lost: Vec<String> = ledger
                    .acked
                    .iter()
                    .filter(|b| !ch.finished.contains_key(*b) && !ch.maybe_finished.contains(*b))
                    .cloned()
                    .collect();
                (c, lost)
            })
            .collect()
    };
    loop {
        let done = missing(&ledger.lock().unwrap())
            .iter()
            .all(|(_, lost)| lost.is_empty());
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop(n);

    let ledger = ledger.lock().unwrap();
    eprintln!(
        "crash_mixed: {} acknowledged, {} deliveries, {} duplicates within the bound, {} kills",
        ledger.acked.len(),
        ledger.deliveries,
        ledger.duplicates,
        ledger.kills.len()
    );
    assert!(
        ledger.acked.len() > 100,
        "too little load to mean anything (seed {seed})"
    );
    let problems: Vec<&String> = ledger.problems.iter().take(20).collect();
    assert!(
        ledger.problems.is_empty(),
        "{} problems (NSQRS_CRASH_SEED={seed}): {problems:#?}",
        ledger.problems.len()
    );
    for (c, lost) in missing(&ledger) {
        let histories: Vec<(&String, Option<&Vec<String>>)> = lost
            .iter()
            .take(5)
            .map(|b| (b, ledger.channels[c].history.get(b)))
            .collect();
        assert!(
            lost.is_empty(),
            "channel {}: {} acknowledged messages never finished (NSQRS_CRASH_SEED={seed}), e.g. {:#?}; kills at {:?}",
            CHANNELS[c],
            lost.len(),
            histories,
            ledger.kills
        );
    }
}
