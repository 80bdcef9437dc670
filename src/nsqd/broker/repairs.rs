//! The record of damage the broker found in its data directory and contained: a torn tail cut
//! off, a damaged record skipped, a file set aside, a channel rebuilt. Each repair is one log
//! line naming the file, the offset and what was lost or kept, and is listed on `/stats`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// How many repairs `/stats` lists (the count covers all of them).
const KEPT: usize = 100;

/// What was done about a piece of damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairAction {
    /// The end of a log segment held a partial or damaged record with nothing intact after
    /// it (a crash mid-write): cut off.
    TornTailCut,
    /// Damaged records with intact records after them: skipped, their bytes copied aside.
    RecordsSkipped,
    /// A file that could not be read or trusted was left out (renamed `.bad` when possible).
    FileSetAside,
    /// A channel's saved state could not be trusted: rebuilt from the topic log.
    ChannelRebuilt,
    /// A channel's saved cursor pointed past the end of the log: moved back to the end.
    CursorClamped,
    /// A topic could not be opened: not served, its files kept, every other topic served.
    TopicSetAside,
    /// `nsqd.dat` could not be parsed: topics and channels rebuilt from the data directory.
    MetadataRebuilt,
}

impl RepairAction {
    fn text(self) -> &'static str {
        match self {
            RepairAction::TornTailCut => "torn tail cut",
            RepairAction::RecordsSkipped => "damaged records skipped",
            RepairAction::FileSetAside => "file set aside",
            RepairAction::ChannelRebuilt => "channel rebuilt",
            RepairAction::CursorClamped => "cursor clamped",
            RepairAction::TopicSetAside => "topic set aside",
            RepairAction::MetadataRebuilt => "metadata rebuilt",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// Unix time (seconds) of the repair.
    pub time: i64,
    pub action: RepairAction,
    pub file: String,
    /// Byte offset in `file` where the damage starts, when it is a place in a file.
    pub offset: Option<u64>,
    /// What was lost and what was kept.
    pub detail: String,
}

#[derive(Default)]
pub struct Repairs {
    count: AtomicU64,
    recent: Mutex<VecDeque<Repair>>,
}

impl Repairs {
    /// Logs a repair (one line) and lists it on `/stats`.
    pub fn report(&self, action: RepairAction, file: &Path, offset: Option<u64>, detail: impl Into<String>) {
        let detail = detail.into();
        let at = offset.map(|o| format!(" at offset {o}")).unwrap_or_default();
        eprintln!(
            "[nsqd] WARNING: repair: {} in {}{at}: {detail}",
            action.text(),
            file.display()
        );
        let repair = Repair {
            time: chrono::Utc::now().timestamp(),
            action,
            file: file.display().to_string(),
            offset,
            detail,
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock();
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(repair);
    }

    /// Repairs made since the broker started.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The latest repairs, oldest first.
    pub fn recent(&self) -> Vec<Repair> {
        self.recent.lock().iter().cloned().collect()
    }
}

impl Repair {
    /// The repair as its log line says it (for the text form of `/stats`).
    pub fn line(&self) -> String {
        let at = self.offset.map(|o| format!(" at offset {o}")).unwrap_or_default();
        format!("{} in {}{at}: {}", self.action.text(), self.file, self.detail)
    }
}
