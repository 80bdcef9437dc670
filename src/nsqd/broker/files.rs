//! The broker's file descriptors: one bounded cache of open files shared by every topic log,
//! channel journal and log reader, so the number of descriptors does not grow with the number
//! of topics and channels, and the watch that reports running out of descriptors.
//!
//! Files are opened on demand and kept open while they are used; beyond the cache's bound the
//! least recently used are closed, and files idle for a while are closed too. A handle is an
//! `Arc<File>`: closing a cached file never pulls it from under a reader or an fsync in
//! progress, whose clone keeps it open until it is dropped. Every open the storage makes goes
//! through `with_descriptor`, which, when the process is out of descriptors, closes idle cached
//! files and tries once more before giving up.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long an exhaustion episode keeps `/ping` unhealthy after it was last seen, so that a
/// health check polling every few seconds notices a burst.
const EXHAUSTION_REPORT_FOR: Duration = Duration::from_secs(10);

/// Identifies one cached file: its owner (a topic log, a channel store) and which of the
/// owner's files (a segment's start position; 0 for a journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    pub owner: u64,
    pub part: u64,
}

struct Entry {
    file: Arc<File>,
    writable: bool,
    last_used: u64,
}

struct Cached {
    files: HashMap<FileKey, Entry>,
    /// Counts uses; an entry's `last_used` is this clock at its last use.
    clock: u64,
    /// The clock at the previous idle sweep: entries not used since are idle.
    swept_at: u64,
}

/// The bounded cache of open files. See the module documentation.
pub struct FileCache {
    cached: Mutex<Cached>,
    capacity: usize,
    next_owner: AtomicU64,
    /// Files opened on a miss, since start.
    opens: AtomicU64,
    watch: DescriptorWatch,
}

impl FileCache {
    /// A cache that keeps at most `capacity` files open.
    pub fn new(capacity: usize) -> FileCache {
        FileCache {
            cached: Mutex::new(Cached {
                files: HashMap::new(),
                clock: 0,
                swept_at: 0,
            }),
            capacity: capacity.max(4),
            next_owner: AtomicU64::new(1),
            opens: AtomicU64::new(0),
            watch: DescriptorWatch::default(),
        }
    }

    /// A cache sized for the process's descriptor limit: a quarter of it (the rest is for
    /// client connections), at most 4096.
    pub fn for_process() -> FileCache {
        FileCache::new((descriptor_limit() / 4).clamp(16, 4096) as usize)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Files open in the cache now.
    pub fn open_files(&self) -> usize {
        self.cached.lock().files.len()
    }

    /// How many files were opened because they were not in the cache.
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// A fresh owner number for a log or a channel store.
    pub fn new_owner(&self) -> u64 {
        self.next_owner.fetch_add(1, Ordering::Relaxed)
    }

    /// The open file for `key`, opening `path()` on a miss: for reading, and also for
    /// appending (created if missing) when `writable`. A hit is one lock and one lookup.
    pub fn get(&self, key: FileKey, writable: bool, path: impl FnOnce() -> PathBuf) -> io::Result<Arc<File>> {
        {
            let mut cached = self.cached.lock();
            cached.clock += 1;
            let now = cached.clock;
            if let Some(entry) = cached.files.get_mut(&key) {
                if entry.writable || !writable {
                    entry.last_used = now;
                    return Ok(entry.file.clone());
                }
            }
        }
        // Opened without the lock held: a slow open must not stall every other file user.
        self.opens.fetch_add(1, Ordering::Relaxed);
        let path = path();
        let file = Arc::new(self.with_descriptor(|| {
            let mut options = OpenOptions::new();
            options.read(true);
            if writable {
                options.append(true).create(true);
            }
            options.open(&path)
        })?);
        let mut cached = self.cached.lock();
        cached.clock += 1;
        let now = cached.clock;
        let entry = cached.files.entry(key).or_insert_with(|| Entry {
            file: file.clone(),
            writable,
            last_used: now,
        });
        // Someone may have opened it meanwhile; the stronger handle wins.
        if writable && !entry.writable {
            entry.file = file.clone();
            entry.writable = true;
        }
        entry.last_used = now;
        let handle = entry.file.clone();
        if cached.files.len() > self.capacity {
            evict_oldest(&mut cached, self.capacity - self.capacity / 8);
        }
        Ok(handle)
    }

    /// Closes `key`'s cached file (its file was renamed, removed or replaced).
    pub fn forget(&self, key: FileKey) {
        let removed = self.cached.lock().files.remove(&key);
        drop(removed);
    }

    /// Closes every cached file of `owner` (a deleted topic or channel).
    pub fn forget_owner(&self, owner: u64) {
        let mut cached = self.cached.lock();
        let doomed: Vec<FileKey> = cached
            .files
            .keys()
            .filter(|k| k.owner == owner)
            .copied()
            .collect();
        let removed: Vec<Entry> = doomed.iter().filter_map(|k| cached.files.remove(k)).collect();
        drop(cached);
        drop(removed);
    }

    /// Closes files not used since the previous sweep; called every few seconds, so idle
    /// topics and channels hold no descriptor.
    pub fn sweep_idle(&self) {
        let mut cached = self.cached.lock();
        let since = cached.swept_at;
        let idle: Vec<FileKey> = cached
            .files
            .iter()
            .filter(|(_, e)| e.last_used <= since)
            .map(|(k, _)| *k)
            .collect();
        let removed: Vec<Entry> = idle.iter().filter_map(|k| cached.files.remove(k)).collect();
        cached.swept_at = cached.clock;
        drop(cached);
        drop(removed);
    }

    /// Closes cached files nobody is using right now; returns how many were closed.
    pub fn shed(&self) -> usize {
        let mut cached = self.cached.lock();
        let idle: Vec<FileKey> = cached
            .files
            .iter()
            .filter(|(_, e)| Arc::strong_count(&e.file) == 1)
            .map(|(k, _)| *k)
            .collect();
        let removed: Vec<Entry> = idle.iter().filter_map(|k| cached.files.remove(k)).collect();
        drop(cached);
        removed.len()
    }

    /// Runs `open` (anything that takes a descriptor). When the process is out of
    /// descriptors, closes idle cached files and runs it once more; a second failure is
    /// remembered for `/ping`.
    pub fn with_descriptor<T>(&self, mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match open() {
            Err(e) if is_out_of_descriptors(&e) => {
                self.shed();
                open().inspect_err(|e| self.note_error(e))
            }
            other => other,
        }
    }

    /// Notes an error from anywhere in the process that may mean descriptors ran out.
    pub fn note_error(&self, e: &io::Error) {
        if is_out_of_descriptors(e) {
            self.watch.exhausted(format!(
                "out of file descriptors (limit {}) - {e}",
                descriptor_limit()
            ));
        }
    }

    /// Counts the descriptors in use; when the process is close to its limit, closes idle
    /// cached files so connections can still be accepted, and remembers the episode for
    /// `/ping`. Called about once a second.
    pub fn check_descriptors(&self) {
        let limit = descriptor_limit();
        let margin = (limit / 64).clamp(4, 64);
        match descriptors_in_use() {
            Ok(in_use) if in_use + margin <= limit => {}
            Ok(in_use) => {
                self.shed();
                self.watch
                    .exhausted(format!("out of file descriptors - {in_use} of {limit} in use"));
            }
            Err(e) if is_out_of_descriptors(&e) => {
                self.shed();
                self.watch
                    .exhausted(format!("out of file descriptors - {limit} of {limit} in use"));
            }
            // No /proc: nothing to count, failures are still noted where they happen.
            Err(_) => {}
        }
    }

    /// Why the broker is short of descriptors, while that is recent.
    pub fn exhaustion(&self) -> Option<String> {
        self.watch.current()
    }
}

/// Closes the least recently used entries until `keep` remain.
fn evict_oldest(cached: &mut Cached, keep: usize) {
    let excess = cached.files.len().saturating_sub(keep);
    if excess == 0 {
        return;
    }
    let mut ages: Vec<(u64, FileKey)> = cached.files.iter().map(|(k, e)| (e.last_used, *k)).collect();
    ages.select_nth_unstable(excess - 1);
    for (_, key) in &ages[..excess] {
        cached.files.remove(key);
    }
}

/// The last time descriptors ran out, and why.
#[derive(Default)]
struct DescriptorWatch {
    last: Mutex<Option<(Instant, String)>>,
}

impl DescriptorWatch {
    fn exhausted(&self, why: String) {
        let mut last = self.last.lock();
        let episode_is_new = last
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= EXHAUSTION_REPORT_FOR);
        if episode_is_new {
            eprintln!("[nsqd] ERROR: {why}; /ping answers NOK while it lasts");
        }
        *last = Some((Instant::now(), why));
    }

    fn current(&self) -> Option<String> {
        let last = self.last.lock();
        match &*last {
            Some((at, why)) if at.elapsed() < EXHAUSTION_REPORT_FOR => Some(why.clone()),
            _ => None,
        }
    }
}

/// EMFILE (this process) or ENFILE (the whole system).
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The soft limit on open descriptors (RLIMIT_NOFILE).
pub fn descriptor_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// Raises the soft descriptor limit to the hard limit, as Go's runtime does at start for every
/// Go program (so nsqd has it). Returns the soft limit in force afterwards.
pub fn raise_descriptor_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // Refused (say, a hard limit above the kernel's nr_open): keep the soft limit.
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
    }
    descriptor_limit()
}

/// How many descriptors the process has open (needs one more to count them).
fn descriptors_in_use() -> io::Result<u64> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(part: u64) -> FileKey {
        FileKey { owner: 1, part }
    }

    #[test]
    fn bounded_and_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(8);
        let path = |i: u64| dir.path().join(format!("f{i}"));
        for i in 0..8 {
            cache.get(key(i), true, || path(i)).unwrap();
        }
        let zero = cache
            .get(key(0), true, || unreachable!("a hit opens nothing"))
            .unwrap();
        cache.get(key(8), true, || path(8)).unwrap();
        assert!(cache.open_files() <= 8);
        // File 0 was used last among the old ones, so files 1 and 2 went first.
        cache
            .get(key(0), true, || unreachable!("file 0 was evicted"))
            .unwrap();
        let mut reopened = false;
        cache
            .get(key(1), true, || {
                reopened = true;
                path(1)
            })
            .unwrap();
        assert!(reopened, "file 1 should have been closed");
        for i in 9..40 {
            cache.get(key(i), true, || path(i)).unwrap();
            assert!(cache.open_files() <= 8);
        }
        // A file in use stays usable after eviction.
        drop(cache);
        use std::io::Write;
        (&*zero).write_all(b"still open").unwrap();
        assert_eq!(std::fs::read(path(0)).unwrap(), b"still open");
    }

    #[test]
    fn writable_request_upgrades_a_read_only_entry() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seg");
        std::fs::write(&p, b"abc").unwrap();
        let cache = FileCache::new(8);
        let ro = cache.get(key(1), false, || p.clone()).unwrap();
        let rw = cache.get(key(1), true, || p.clone()).unwrap();
        assert!(!Arc::ptr_eq(&ro, &rw));
        use std::io::Write;
        (&*rw).write_all(b"d").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcd");
    }

    #[test]
    fn idle_files_are_closed_by_two_sweeps() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(8);
        cache.get(key(1), true, || dir.path().join("a")).unwrap();
        cache.sweep_idle();
        cache.get(key(2), true, || dir.path().join("b")).unwrap();
        cache.sweep_idle();
        assert_eq!(cache.open_files(), 1, "the file used between the sweeps stays");
        cache.sweep_idle();
        assert_eq!(cache.open_files(), 0);
    }
}
