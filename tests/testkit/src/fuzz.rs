//! What the fuzz tests share: the case budget (`NSQRS_FUZZ_CASES`), a seed that can be replayed
//! (`NSQRS_FUZZ_SEED`), inputs made by mutating valid ones, and a per-thread count of the bytes
//! a call allocates, so a parser that trusts a length it was sent is caught in the act.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestError, TestRunner};

/// Cases per fuzzer: `NSQRS_FUZZ_CASES` when set (the long run), else the fuzzer's default.
pub fn cases(default: u32) -> u32 {
    std::env::var("NSQRS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `NSQRS_FUZZ_SEED`, or a fresh seed; either way it is printed, so a failure can be replayed.
fn seed() -> u64 {
    std::env::var("NSQRS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

/// `NSQRS_FUZZ_SECONDS`: when set, each fuzzer repeats its cases, with a new seed each round,
/// until this long has passed (the long run).
fn seconds() -> Option<f64> {
    std::env::var("NSQRS_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// A runner for one fuzzer. `shrink` is off for fuzzers whose cases share a server: once an
/// input has killed it every smaller input fails too, and the one reported must be the killer.
pub fn runner(name: &str, default_cases: u32, shrink: bool) -> Fuzz {
    Fuzz {
        name: name.to_string(),
        cases: cases(default_cases),
        seed: seed(),
        shrink,
    }
}

/// One fuzzer's budget: rounds of proptest cases, reported with the seed that replays them.
pub struct Fuzz {
    name: String,
    cases: u32,
    seed: u64,
    shrink: bool,
}

impl Fuzz {
    pub fn run<S: Strategy>(
        self,
        strategy: &S,
        test: impl Fn(S::Value) -> TestCaseResult,
    ) -> Result<(), TestError<S::Value>> {
        let started = std::time::Instant::now();
        let mut rounds = 0u64;
        loop {
            let seed = self.seed.wrapping_add(rounds);
            let mut runner = TestRunner::new(Config {
                cases: self.cases,
                rng_seed: RngSeed::Fixed(seed),
                failure_persistence: None,
                max_shrink_iters: if self.shrink { 2048 } else { 0 },
                ..Config::default()
            });
            if let Err(e) = runner.run(strategy, &test) {
                eprintln!(
                    "fuzz {}: failed; replay: NSQRS_FUZZ_CASES={} NSQRS_FUZZ_SEED={seed}",
                    self.name, self.cases
                );
                return Err(e);
            }
            rounds += 1;
            let elapsed = started.elapsed().as_secs_f64();
            if seconds().is_none_or(|budget| elapsed >= budget) {
                eprintln!(
                    "fuzz {}: {} cases passed in {elapsed:.1} s (seed {}, {rounds} round(s))",
                    self.name,
                    rounds * self.cases as u64,
                    self.seed
                );
                return Ok(());
            }
        }
    }
}

/// Bytes that print as a Rust byte string, so a failing input can be pasted into a test.
#[derive(Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"")?;
        for &b in &self.0 {
            write!(f, "{}", std::ascii::escape_default(b))?;
        }
        write!(f, "\"")
    }
}

/// One change to an input: the damage a hostile client or a failing disk does.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// Four bytes overwritten with a big-endian length or count that parsers must distrust.
    SetU32(Index, u32),
    /// Like `SetU32`, at one of the places that already hold what looks like a length or a
    /// count (a big-endian value no larger than the input), so the fields that say how much
    /// follows are hit far more often than by chance.
    SetLength(Index, u32),
    Truncate(Index),
    Delete(Index, usize),
    Duplicate {
        from: Index,
        len: usize,
        to: Index,
    },
    Insert(Index, Vec<u8>),
}

/// Lengths and counts at the edges: zero, one, negative as i32, huge, and plain random.
fn suspicious_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(i32::MAX as u32),
        Just(i32::MIN as u32),
        Just(u32::MAX - 3),
        0u32..=300,
        (1u32 << 16)..(1 << 24),
        any::<u32>(),
    ]
}

/// One random mutation.
pub fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, v)| Mutation::SetByte(at, v)),
        1 => (any::<Index>(), suspicious_u32()).prop_map(|(at, v)| Mutation::SetU32(at, v)),
        3 => (any::<Index>(), suspicious_u32()).prop_map(|(at, v)| Mutation::SetLength(at, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
        1 => (any::<Index>(), 1usize..64, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Mutation::Insert(at, b)),
    ]
}

impl Mutation {
    pub fn apply(&self, data: &mut Vec<u8>) {
        let len = data.len();
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        match self {
            Mutation::FlipBit(i, bit) if len > 0 => data[at(i)] ^= 1 << bit,
            Mutation::SetByte(i, v) if len > 0 => data[at(i)] = *v,
            Mutation::SetU32(i, v) if len >= 4 => {
                let start = i.index(len - 3);
                data[start..start + 4].copy_from_slice(&v.to_be_bytes());
            }
            Mutation::SetLength(i, v) if len >= 4 => {
                let looks_like_length = |start: &usize| {
                    let n = u32::from_be_bytes(data[*start..*start + 4].try_into().unwrap());
                    n > 0 && n as usize <= len
                };
                let fields: Vec<usize> = (0..len - 3).filter(looks_like_length).collect();
                let start = if fields.is_empty() {
                    i.index(len - 3)
                } else {
                    fields[i.index(fields.len())]
                };
                data[start..start + 4].copy_from_slice(&v.to_be_bytes());
            }
            Mutation::Truncate(i) => data.truncate(at(i)),
            Mutation::Delete(i, n) if len > 0 => {
                let start = at(i);
                data.drain(start..(start + n).min(len));
            }
            Mutation::Duplicate { from, len: n, to } if len > 0 => {
                let start = at(from);
                let chunk = data[start..(start + n).min(len)].to_vec();
                let to = at(to);
                data.splice(to..to, chunk);
            }
            Mutation::Insert(i, bytes) => {
                let to = at(i);
                data.splice(to..to, bytes.iter().copied());
            }
            _ => {}
        }
    }
}

/// One of `seeds`, changed by up to `max_mutations` mutations.
pub fn mutated(seeds: Vec<Vec<u8>>, max_mutations: usize) -> impl Strategy<Value = Input> {
    (select(seeds), vec(mutation_strategy(), 0..=max_mutations)).prop_map(|(seed, mutations)| {
        let mut data = seed;
        for m in &mutations {
            m.apply(&mut data);
        }
        Input(data)
    })
}

/// Random bytes, up to `max_len` of them.
pub fn random(max_len: usize) -> impl Strategy<Value = Input> {
    vec(any::<u8>(), 0..max_len).prop_map(Input)
}

/// Mostly mutated valid inputs, some plain random ones.
pub fn hostile(seeds: Vec<Vec<u8>>, max_mutations: usize, max_random: usize) -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => mutated(seeds, max_mutations),
        1 => random(max_random),
    ]
}

/// Counts what each thread allocates, so `peak_bytes` can bound a call.
pub struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// A single allocation this large while `peak_bytes` runs aborts the test at once: it may be
/// what takes the machine down, so it cannot wait for the bound to be checked afterwards.
const ABORT_ABOVE: usize = 1 << 30;

fn note(delta: isize, size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    if size > ABORT_ABOVE && MEASURING.try_with(Cell::get).unwrap_or(false) {
        let msg = b"fuzz: a call being measured asked for more than 1 GiB at once\n";
        // SAFETY: writing a static buffer to stderr; nothing here allocates.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        std::process::abort();
    }
}

// SAFETY: every call is passed to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            note(layout.size() as isize, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            note(layout.size() as isize, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        note(-(layout.size() as isize), 0);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize, new_size);
        }
        p
    }
}

/// Runs `f` and returns its result with the most bytes it held at once on this thread
/// (including what it returns).
pub fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    MEASURING.with(|m| m.set(true));
    let out = f();
    MEASURING.with(|m| m.set(false));
    let peak = PEAK.with(Cell::get);
    (out, (peak - base).max(0) as usize)
}
