//! The engine's state machine in-process, over the in-memory log: what a channel hands out,
//! how attempts count, when timed-out, requeued and deferred messages come back, and who may
//! finish or touch what. Time is passed in where the engine takes it (`process_timers`), so
//! nothing here sleeps and each test runs in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::channel::{Channel, Delivery};
use super::client::ClientHandle;
use super::events::{EventMode, EventSink};
use super::log::MemLog;
use super::stats::E2eConfig;
use super::topic::{LogStore, Topic};
use crate::common::time::now_ns;
use crate::nsqd::options::NsqdOptions;
use crate::protocol::identify::ClientSettings;
use crate::protocol::MessageId;

const SECOND: i64 = 1_000_000_000;
const MSG_TIMEOUT: Duration = Duration::from_secs(60);

/// A topic on a memory log with a channel `c` (or `c#ephemeral` and friends).
fn topic_with_channel(channel: &str, mem_queue_size: u64) -> (Topic, Arc<Channel>) {
    let topic = Topic::new(
        "t",
        LogStore::Memory(Mutex::new(MemLog::new(10_000))),
        1,
        mem_queue_size,
        Arc::new(EventSink::new(EventMode::Off, None)),
        E2eConfig {
            percentiles: vec![],
            window: Duration::from_secs(600),
        },
        None,
    );
    let (ch, created) = topic.get_or_create_channel(channel, false).unwrap();
    assert!(created);
    (topic, ch)
}

fn client(id: u64) -> ClientHandle {
    let limits = NsqdOptions::default().identify_limits();
    ClientHandle::new(
        id,
        format!("127.0.0.1:{id}"),
        0,
        ClientSettings::defaults(&limits, "127.0.0.1"),
    )
}

fn publish(topic: &Topic, bodies: &[&str]) -> Vec<MessageId> {
    let bodies: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
    topic.publish(&bodies, 0).unwrap()
}

fn take(ch: &Channel, client: &ClientHandle, max: usize) -> Vec<Delivery> {
    ch.take(client, max, MSG_TIMEOUT, 0)
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect()
}

#[test]
fn messages_go_out_once_in_publish_order_with_attempt_one() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    let ids = publish(&topic, &["a", "b", "c"]);
    let alice = client(1);
    let got = take(&ch, &alice, 2);
    assert_eq!(bodies(&got), ["a", "b"]);
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), ids[..2]);
    assert!(got.iter().all(|d| d.attempts == 1));
    assert_eq!(bodies(&take(&ch, &alice, 10)), ["c"]);
    assert!(take(&ch, &alice, 10).is_empty(), "nothing is handed out twice");
    let counts = ch.counts();
    assert_eq!((counts.depth, counts.in_flight, counts.message_count), (0, 3, 3));
}

#[test]
fn a_timed_out_message_comes_back_with_one_more_attempt() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a"]);
    let alice = client(1);
    let first = take(&ch, &alice, 1).remove(0);
    // Not yet: the deadline is a minute away.
    assert!(ch.process_timers(now_ns() + 30 * SECOND).is_empty());
    assert!(take(&ch, &alice, 1).is_empty());
    assert_eq!(ch.process_timers(now_ns() + 61 * SECOND), [alice.id]);
    assert_eq!(ch.timeout_count.load(std::sync::atomic::Ordering::Relaxed), 1);
    let bob = client(2);
    let again = take(&ch, &bob, 1).remove(0);
    assert_eq!((again.id, again.attempts), (first.id, 2));
    // The late FIN of the first delivery is refused: the message is bob's now.
    assert_eq!(
        ch.finish(alice.id, first.id).unwrap_err(),
        "client does not own message"
    );
    assert!(ch.finish(bob.id, first.id).is_ok());
}

#[test]
fn only_the_owner_finishes_and_a_finished_message_is_gone() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a"]);
    let (alice, bob) = (client(1), client(2));
    let m = take(&ch, &alice, 1).remove(0);
    assert_eq!(
        ch.finish(bob.id, m.id).unwrap_err(),
        "client does not own message"
    );
    assert_eq!(
        ch.finish(alice.id, MessageId(42)).unwrap_err(),
        "ID not in flight"
    );
    assert_eq!(ch.finish(alice.id, m.id).unwrap().attempts, 1);
    assert!(ch.process_timers(now_ns() + 3600 * SECOND).is_empty());
    assert!(take(&ch, &alice, 10).is_empty());
    assert_eq!(ch.counts().in_flight, 0);
}

#[test]
fn requeued_messages_come_back_in_requeue_order_keeping_their_attempts() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a", "b", "c"]);
    let alice = client(1);
    let got = take(&ch, &alice, 3);
    ch.requeue(alice.id, got[2].id, 0).unwrap();
    ch.requeue(alice.id, got[0].id, 0).unwrap();
    let again = take(&ch, &alice, 3);
    assert_eq!(bodies(&again), ["c", "a"]);
    assert!(again.iter().all(|d| d.attempts == 2));
    assert_eq!(ch.requeue_count.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(
        ch.requeue(client(2).id, got[1].id, 0).unwrap_err(),
        "client does not own message"
    );
}

#[test]
fn a_requeue_with_a_delay_is_deferred_until_due() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a"]);
    let alice = client(1);
    let m = take(&ch, &alice, 1).remove(0);
    let requeued_at = now_ns();
    ch.requeue(alice.id, m.id, 5_000).unwrap();
    let counts = ch.counts();
    assert_eq!((counts.in_flight, counts.deferred, counts.depth), (0, 1, 0));
    let due = ch.next_timer().expect("a timer for the deferred message");
    assert!(
        due >= requeued_at + 5 * SECOND && due <= now_ns() + 5 * SECOND,
        "due {due}"
    );
    ch.process_timers(due - 1);
    assert!(take(&ch, &alice, 1).is_empty(), "not before it is due");
    ch.process_timers(due);
    let again = take(&ch, &alice, 1).remove(0);
    assert_eq!((again.id, again.attempts), (m.id, 2));
}

#[test]
fn a_deferred_publish_waits_for_its_time_and_counts_as_deferred_meanwhile() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    let due = now_ns() + 10 * SECOND;
    let ids = topic.publish(&[b"later"], due).unwrap();
    publish(&topic, &["now"]);
    let alice = client(1);
    assert_eq!(bodies(&take(&ch, &alice, 10)), ["now"]);
    assert_eq!(ch.counts().deferred, 1);
    ch.process_timers(due - 1);
    assert!(take(&ch, &alice, 10).is_empty());
    ch.process_timers(due);
    let later = take(&ch, &alice, 10).remove(0);
    assert_eq!(
        (later.id, later.attempts, later.body.as_ref()),
        (ids[0], 1, &b"later"[..])
    );
    assert_eq!(ch.counts().deferred, 0);
}

#[test]
fn attempts_count_every_delivery_across_timeouts_and_requeues() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a"]);
    let alice = client(1);
    let mut attempts = Vec::new();
    let m = take(&ch, &alice, 1).remove(0);
    attempts.push(m.attempts);
    ch.process_timers(now_ns() + 61 * SECOND);
    let m = take(&ch, &alice, 1).remove(0);
    attempts.push(m.attempts);
    ch.requeue(alice.id, m.id, 0).unwrap();
    let m = take(&ch, &alice, 1).remove(0);
    attempts.push(m.attempts);
    ch.requeue(alice.id, m.id, 1).unwrap();
    ch.process_timers(now_ns() + SECOND);
    attempts.push(take(&ch, &alice, 1).remove(0).attempts);
    assert_eq!(attempts, [1, 2, 3, 4]);
}

#[test]
fn touch_moves_the_deadline_but_never_past_max_msg_timeout() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a"]);
    let (alice, bob) = (client(1), client(2));
    let m = take(&ch, &alice, 1).remove(0);
    assert_eq!(
        ch.touch(bob.id, m.id, MSG_TIMEOUT, MSG_TIMEOUT).unwrap_err(),
        "client does not own message"
    );
    assert_eq!(
        ch.touch(alice.id, MessageId(7), MSG_TIMEOUT, MSG_TIMEOUT)
            .unwrap_err(),
        "ID not in flight"
    );
    // A touch asking for a minute more gets 5 s after delivery at most.
    ch.touch(alice.id, m.id, MSG_TIMEOUT, Duration::from_secs(5))
        .unwrap();
    let deadline = ch.next_timer().unwrap();
    assert!(deadline <= now_ns() + 5 * SECOND, "deadline {deadline}");
    assert_eq!(ch.process_timers(deadline), [alice.id]);
    assert_eq!(take(&ch, &alice, 1).remove(0).attempts, 2);
}

#[test]
fn a_paused_channel_hands_out_nothing_until_unpaused() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a", "b"]);
    let alice = client(1);
    ch.set_paused(true);
    assert!(take(&ch, &alice, 10).is_empty());
    assert_eq!(ch.counts().depth, 2);
    ch.set_paused(false);
    assert_eq!(bodies(&take(&ch, &alice, 10)), ["a", "b"]);
}

#[test]
fn an_ephemeral_channel_keeps_only_mem_queue_size_messages() {
    let (topic, ch) = topic_with_channel("c#ephemeral", 3);
    publish(&topic, &["1", "2", "3", "4", "5"]);
    assert_eq!(bodies(&take(&ch, &client(1), 10)), ["3", "4", "5"]);
}

#[test]
fn emptying_a_channel_drops_queued_deferred_and_in_flight_alike() {
    let (topic, ch) = topic_with_channel("c", 10_000);
    publish(&topic, &["a", "b", "c"]);
    topic.publish(&[b"later"], now_ns() + 60 * SECOND).unwrap();
    let alice = client(1);
    let m = take(&ch, &alice, 1).remove(0);
    ch.empty();
    let counts = ch.counts();
    assert_eq!((counts.depth, counts.in_flight, counts.deferred), (0, 0, 0));
    assert_eq!(ch.finish(alice.id, m.id).unwrap_err(), "ID not in flight");
    ch.process_timers(now_ns() + 3600 * SECOND);
    assert!(take(&ch, &alice, 10).is_empty());
}
