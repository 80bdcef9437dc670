//! The registration DB of nsqlookupd (nsq-reference §2.1): which nsqd produces which topic and
//! channel.
//!
//! A registration is `(category, key, subkey)`: `client` (one per identified nsqd, empty key),
//! `topic` (key = topic) and `channel` (key = topic, subkey = channel). Each maps to the
//! producers registered under it, keyed by peer id (the nsqd connection's remote `ip:port`).
//! Removing a producer leaves its registration in place, empty, as nsqlookupd does: a topic
//! stays listed until it is deleted explicitly. Everything is in memory; nothing persists.
//!
//! Results come back sorted (registrations by key, producers by peer id) where nsqlookupd's
//! order is that of a Go map, i.e. random, so callers and tests see a stable order.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

/// The kind of thing a registration announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Client,
    Topic,
    Channel,
}

impl Category {
    /// The name nsqlookupd uses in logs and in `/debug` keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Client => "client",
            Category::Topic => "topic",
            Category::Channel => "channel",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key of the DB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registration {
    pub category: Category,
    pub key: String,
    pub subkey: String,
}

impl Registration {
    /// The registration every identified nsqd gets (`/nodes` lists these).
    pub fn client() -> Registration {
        Registration {
            category: Category::Client,
            key: String::new(),
            subkey: String::new(),
        }
    }

    pub fn topic(topic: &str) -> Registration {
        Registration {
            category: Category::Topic,
            key: topic.to_string(),
            subkey: String::new(),
        }
    }

    pub fn channel(topic: &str, channel: &str) -> Registration {
        Registration {
            category: Category::Channel,
            key: topic.to_string(),
            subkey: channel.to_string(),
        }
    }

    /// True when this registration is in `category` and matches `key` and `subkey`, where
    /// `None` matches anything.
    pub fn matches(&self, category: Category, key: Option<&str>, subkey: Option<&str>) -> bool {
        self.category == category
            && key.is_none_or(|k| k == self.key)
            && subkey.is_none_or(|s| s == self.subkey)
    }
}

/// What an nsqd said about itself in IDENTIFY. One per connection, shared by all of that
/// connection's registrations, so a PING refreshes every one of them at once.
#[derive(Debug, Default)]
pub struct PeerInfo {
    /// The connection's remote `ip:port`: the key of this peer's producers.
    pub id: String,
    pub remote_address: String,
    pub hostname: String,
    pub broadcast_address: String,
    pub tcp_port: i64,
    pub http_port: i64,
    pub version: String,
    pub topology_zone: String,
    pub topology_region: String,
    /// Unix nanoseconds of the last IDENTIFY or PING.
    pub last_update: AtomicI64,
}

impl PeerInfo {
    pub fn last_update(&self) -> i64 {
        self.last_update.load(Ordering::Relaxed)
    }

    pub fn set_last_update(&self, unix_ns: i64) {
        self.last_update.store(unix_ns, Ordering::Relaxed);
    }

    /// The `<broadcast_address>:<http_port>` that `/topic/tombstone?node=` names a peer by.
    pub fn node_name(&self) -> String {
        format!("{}:{}", self.broadcast_address, self.http_port)
    }
}

/// A peer under one registration. Tombstones belong here, not to the peer: an nsqd is
/// tombstoned for one topic at a time.
#[derive(Debug, Clone)]
pub struct Producer {
    pub peer: Arc<PeerInfo>,
    pub tombstoned: bool,
    /// Unix nanoseconds of the last tombstoning; `None` if never tombstoned.
    pub tombstoned_at: Option<i64>,
}

impl Producer {
    fn new(peer: &Arc<PeerInfo>) -> Producer {
        Producer {
            peer: peer.clone(),
            tombstoned: false,
            tombstoned_at: None,
        }
    }

    /// Tombstoned less than `lifetime` ago (at unix nanoseconds `now`).
    pub fn is_tombstoned(&self, lifetime: Duration, now: i64) -> bool {
        match self.tombstoned_at {
            Some(at) if self.tombstoned => elapsed(at, now) < lifetime.as_nanos() as i128,
            _ => false,
        }
    }

    /// Heard from (IDENTIFY or PING) no more than `timeout` before `now`.
    pub fn is_active(&self, timeout: Duration, now: i64) -> bool {
        elapsed(self.peer.last_update(), now) <= timeout.as_nanos() as i128
    }
}

fn elapsed(since: i64, now: i64) -> i128 {
    i128::from(now) - i128::from(since)
}

/// The producers `/lookup` shows: active within `inactive_timeout` and not tombstoned within
/// `tombstone_lifetime`. `/nodes` passes a zero lifetime, which never hides anyone.
pub fn filter_active(
    producers: Vec<Producer>,
    inactive_timeout: Duration,
    tombstone_lifetime: Duration,
    now: i64,
) -> Vec<Producer> {
    producers
        .into_iter()
        .filter(|p| p.is_active(inactive_timeout, now) && !p.is_tombstoned(tombstone_lifetime, now))
        .collect()
}

type Producers = BTreeMap<String, Producer>;

/// The DB. Cheap to share (`Arc<Registry>`); every method takes the lock once, so each call
/// is atomic on its own.
#[derive(Debug, Default)]
pub struct Registry {
    map: RwLock<HashMap<Registration, Producers>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `r` with no producers, if absent (HTTP `/topic/create`, `/channel/create`).
    /// True when it was new.
    pub fn add_registration(&self, r: Registration) -> bool {
        let mut map = self.map.write();
        if map.contains_key(&r) {
            return false;
        }
        map.insert(r, Producers::new());
        true
    }

    /// Adds `peer` as a producer of `r`, creating `r` if needed. A peer already there is left
    /// untouched, tombstone included. True when the peer was added.
    pub fn add_producer(&self, r: Registration, peer: &Arc<PeerInfo>) -> bool {
        let mut map = self.map.write();
        let producers = map.entry(r).or_default();
        if producers.contains_key(&peer.id) {
            return false;
        }
        producers.insert(peer.id.clone(), Producer::new(peer));
        true
    }

    /// Removes the producer with peer id `id` from `r`, leaving `r` even if it is now empty.
    /// Returns whether it was there and how many producers `r` has left.
    pub fn remove_producer(&self, r: &Registration, id: &str) -> (bool, usize) {
        let mut map = self.map.write();
        match map.get_mut(r) {
            Some(producers) => {
                let removed = producers.remove(id).is_some();
                (removed, producers.len())
            }
            None => (false, 0),
        }
    }

    /// Deletes `r` and its producers. True when it existed.
    pub fn remove_registration(&self, r: &Registration) -> bool {
        self.map.write().remove(r).is_some()
    }

    /// The registrations matching, sorted.
    pub fn find_registrations(
        &self,
        category: Category,
        key: Option<&str>,
        subkey: Option<&str>,
    ) -> Vec<Registration> {
        let map = self.map.read();
        let mut out: Vec<Registration> = map
            .keys()
            .filter(|r| r.matches(category, key, subkey))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// The producers of every matching registration, one per peer (the first registration in
    /// sorted order wins), sorted by peer id.
    pub fn find_producers(
        &self,
        category: Category,
        key: Option<&str>,
        subkey: Option<&str>,
    ) -> Vec<Producer> {
        let map = self.map.read();
        let mut regs: Vec<(&Registration, &Producers)> = map
            .iter()
            .filter(|(r, _)| r.matches(category, key, subkey))
            .collect();
        regs.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: BTreeMap<&str, &Producer> = BTreeMap::new();
        for (_, producers) in regs {
            for (id, p) in producers {
                out.entry(id.as_str()).or_insert(p);
            }
        }
        out.into_values().cloned().collect()
    }

    /// Every registration that has peer `id` among its producers, sorted.
    pub fn lookup_registrations(&self, id: &str) -> Vec<Registration> {
        let map = self.map.read();
        let mut out: Vec<Registration> = map
            .iter()
            .filter(|(_, producers)| producers.contains_key(id))
            .map(|(r, _)| r.clone())
            .collect();
        out.sort();
        out
    }

    /// Tombstones, under `topic`'s registration, every producer whose
    /// `<broadcast_address>:<http_port>` is `node`, stamping it with `now`. Returns how many.
    pub fn tombstone_topic_producer(&self, topic: &str, node: &str, now: i64) -> usize {
        let mut map = self.map.write();
        let Some(producers) = map.get_mut(&Registration::topic(topic)) else {
            return 0;
        };
        let mut count = 0;
        for p in producers.values_mut() {
            if p.peer.node_name() == node {
                p.tombstoned = true;
                p.tombstoned_at = Some(now);
                count += 1;
            }
        }
        count
    }

    /// The whole DB, sorted, for `/debug`.
    pub fn dump(&self) -> Vec<(Registration, Vec<Producer>)> {
        let map = self.map.read();
        let mut out: Vec<(Registration, Vec<Producer>)> = map
            .iter()
            .map(|(r, producers)| (r.clone(), producers.values().cloned().collect()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, node: &str, http_port: i64) -> Arc<PeerInfo> {
        Arc::new(PeerInfo {
            id: id.into(),
            remote_address: id.into(),
            broadcast_address: node.into(),
            tcp_port: 4150,
            http_port,
            version: "1.3.0".into(),
            last_update: AtomicI64::new(1_000),
            ..PeerInfo::default()
        })
    }

    #[test]
    fn removing_the_last_producer_leaves_the_key() {
        let db = Registry::new();
        let a = peer("1.1.1.1:1", "a", 4151);
        assert!(db.add_producer(Registration::topic("t"), &a));
        assert!(!db.add_producer(Registration::topic("t"), &a));
        assert_eq!(db.remove_producer(&Registration::topic("t"), &a.id), (true, 0));
        assert_eq!(db.remove_producer(&Registration::topic("t"), &a.id), (false, 0));
        assert_eq!(
            db.find_registrations(Category::Topic, None, Some("")),
            vec![Registration::topic("t")]
        );
        assert!(db.find_producers(Category::Topic, Some("t"), Some("")).is_empty());
        assert_eq!(
            db.remove_producer(&Registration::topic("missing"), &a.id),
            (false, 0)
        );
    }

    #[test]
    fn add_registration_keeps_existing_producers() {
        let db = Registry::new();
        let a = peer("1.1.1.1:1", "a", 4151);
        assert!(db.add_registration(Registration::channel("t", "c")));
        assert!(db.add_producer(Registration::channel("t", "c"), &a));
        assert!(!db.add_registration(Registration::channel("t", "c")));
        assert_eq!(
            db.find_producers(Category::Channel, Some("t"), Some("c")).len(),
            1
        );
    }

    #[test]
    fn wildcards_and_sorting() {
        let db = Registry::new();
        let a = peer("1.1.1.1:2", "a", 4151);
        let b = peer("1.1.1.1:1", "b", 4151);
        for (t, c) in [("t2", "z"), ("t1", "y"), ("t1", "x")] {
            db.add_producer(Registration::channel(t, c), &a);
            db.add_producer(Registration::topic(t), &a);
        }
        db.add_producer(Registration::topic("t1"), &b);
        let channels: Vec<String> = db
            .find_registrations(Category::Channel, Some("t1"), None)
            .into_iter()
            .map(|r| r.subkey)
            .collect();
        assert_eq!(channels, ["x", "y"]);
        let topics: Vec<String> = db
            .find_registrations(Category::Topic, None, Some(""))
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(topics, ["t1", "t2"]);
        // One entry per peer even though `a` is under several registrations.
        let ids: Vec<String> = db
            .find_producers(Category::Topic, None, None)
            .iter()
            .map(|p| p.peer.id.clone())
            .collect();
        assert_eq!(ids, ["1.1.1.1:1", "1.1.1.1:2"]);
        assert_eq!(db.lookup_registrations(&a.id).len(), 5);
        assert_eq!(db.lookup_registrations(&b.id), vec![Registration::topic("t1")]);
        assert!(db.lookup_registrations("nobody").is_empty());
    }

    #[test]
    fn tombstones_are_per_topic_and_expire() {
        let db = Registry::new();
        let a = peer("1.1.1.1:1", "host-a", 4151);
        let b = peer("1.1.1.1:2", "host-b", 4151);
        for p in [&a, &b] {
            db.add_producer(Registration::topic("t"), p);
            db.add_producer(Registration::topic("u"), p);
        }
        assert_eq!(db.tombstone_topic_producer("t", "host-a:4151", 5_000), 1);
        assert_eq!(db.tombstone_topic_producer("t", "host-a:9999", 5_000), 0);
        assert_eq!(db.tombstone_topic_producer("missing", "host-a:4151", 5_000), 0);
        let t = db.find_producers(Category::Topic, Some("t"), Some(""));
        let life = Duration::from_nanos(100);
        assert!(t[0].is_tombstoned(life, 5_099));
        assert!(!t[0].is_tombstoned(life, 5_100));
        assert!(!t[1].is_tombstoned(life, 5_050));
        assert!(!db.find_producers(Category::Topic, Some("u"), Some(""))[0].tombstoned);
        // Re-registering does not clear the tombstone.
        assert!(!db.add_producer(Registration::topic("t"), &a));
        let long = Duration::from_secs(1);
        let visible = filter_active(
            db.find_producers(Category::Topic, Some("t"), Some("")),
            long,
            long,
            5_050,
        );
        assert_eq!(visible.len(), 1);
        assert_eq!(visible[0].peer.id, b.id);
    }

    #[test]
    fn inactivity_is_measured_from_the_last_update() {
        let db = Registry::new();
        let a = peer("1.1.1.1:1", "a", 4151);
        db.add_producer(Registration::client(), &a);
        let p = db.find_producers(Category::Client, Some(""), Some(""));
        let timeout = Duration::from_nanos(10);
        assert!(p[0].is_active(timeout, 1_010));
        assert!(!p[0].is_active(timeout, 1_011));
        a.set_last_update(2_000);
        assert!(p[0].is_active(timeout, 2_005));
        // Huge durations from the command line must not overflow.
        assert!(p[0].is_active(Duration::MAX, i64::MAX));
        assert!(filter_active(p.clone(), timeout, Duration::ZERO, 9_999).is_empty());
        assert_eq!(filter_active(p, timeout, Duration::ZERO, 2_001).len(), 1);
    }
}
