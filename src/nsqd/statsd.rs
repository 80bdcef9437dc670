//! Pushes nsqd's statsd keys over UDP every `--statsd-interval`: counters as deltas since the
//! previous push, gauges as they are, lines packed whole into packets of at most
//! `--statsd-udp-packet-size` bytes and spread over the interval as nsqd spreads them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::nsqd::broker::stats::{self, Stats};
use crate::nsqd::broker::Broker;

/// nsqd's prefix: `%s` becomes `<broadcast address>_<broadcast HTTP port>` with `.` and `:`
/// turned into `_`, and the result always ends in a dot.
pub fn prefix(template: &str, broadcast_address: &str, http_port: u16) -> String {
    if template.is_empty() {
        return String::new();
    }
    let host = if broadcast_address.contains(':') {
        format!("[{broadcast_address}]:{http_port}")
    } else {
        format!("{broadcast_address}:{http_port}")
    };
    let host_key = host.replace(['.', ':'], "_");
    let mut p = template.replace("%s", &host_key);
    if !p.ends_with('.') {
        p.push('.');
    }
    p
}

/// Counter values of the previous push, by topic and channel.
#[derive(Default)]
struct Previous {
    topics: HashMap<String, (u64, u64)>,
    channels: HashMap<(String, String), (u64, u64, u64)>,
}

fn delta(now: u64, before: u64) -> i64 {
    now.wrapping_sub(before) as i64
}

/// The lines of one push, in nsqd's order.
fn lines(
    stats: &Stats,
    prefix: &str,
    exclude_ephemeral: bool,
    mem: bool,
    prev: &mut Previous,
) -> Vec<String> {
    let mut next = Previous::default();
    // (is a counter, key, value)
    let mut order: Vec<(bool, String, i64)> = Vec::new();
    for t in stats.topics.iter().flatten() {
        if exclude_ephemeral && t.topic_name.ends_with("#ephemeral") {
            continue;
        }
        let name = &t.topic_name;
        let (mc, mb) = prev.topics.get(name).copied().unwrap_or_default();
        next.topics
            .insert(name.clone(), (t.message_count, t.message_bytes));
        order.push((
            true,
            format!("topic.{name}.message_count"),
            delta(t.message_count, mc),
        ));
        order.push((
            true,
            format!("topic.{name}.message_bytes"),
            delta(t.message_bytes, mb),
        ));
        order.push((false, format!("topic.{name}.depth"), t.depth as i64));
        order.push((
            false,
            format!("topic.{name}.backend_depth"),
            t.backend_depth as i64,
        ));
        for q in t.e2e_processing_latency.percentiles.iter().flatten() {
            order.push((
                false,
                format!("topic.{name}.e2e_processing_latency_{:.0}", q.quantile * 100.0),
                q.value as i64,
            ));
        }
        for c in &t.channels {
            if exclude_ephemeral && c.channel_name.ends_with("#ephemeral") {
                continue;
            }
            let key = (name.clone(), c.channel_name.clone());
            let (mc, rq, to) = prev.channels.get(&key).copied().unwrap_or_default();
            next.channels
                .insert(key, (c.message_count, c.requeue_count, c.timeout_count));
            let ch = format!("topic.{name}.channel.{}", c.channel_name);
            order.push((true, format!("{ch}.message_count"), delta(c.message_count, mc)));
            order.push((false, format!("{ch}.depth"), c.depth as i64));
            order.push((false, format!("{ch}.backend_depth"), c.backend_depth as i64));
            order.push((false, format!("{ch}.in_flight_count"), c.in_flight_count as i64));
            order.push((false, format!("{ch}.deferred_count"), c.deferred_count as i64));
            order.push((true, format!("{ch}.requeue_count"), delta(c.requeue_count, rq)));
            order.push((true, format!("{ch}.timeout_count"), delta(c.timeout_count, to)));
            order.push((false, format!("{ch}.clients"), c.client_count as i64));
            for q in c.e2e_processing_latency.percentiles.iter().flatten() {
                order.push((
                    false,
                    format!("{ch}.e2e_processing_latency_{:.0}", q.quantile * 100.0),
                    q.value as i64,
                ));
            }
        }
    }
    *prev = next;
    if mem {
        let rss = stats::process_rss_bytes() as i64;
        for (k, v) in [
            ("mem.heap_objects", 0),
            ("mem.heap_idle_bytes", 0),
            ("mem.heap_in_use_bytes", rss),
            ("mem.heap_released_bytes", 0),
            ("mem.gc_pause_usec_100", 0),
            ("mem.gc_pause_usec_99", 0),
            ("mem.gc_pause_usec_95", 0),
            ("mem.next_gc_bytes", 0),
        ] {
            order.push((false, k.to_string(), v));
        }
        // No garbage collector, so no runs to count.
        order.push((true, "mem.gc_runs".to_string(), 0));
    }
    order
        .into_iter()
        .map(|(is_counter, key, v)| {
            let kind = if is_counter { 'c' } else { 'g' };
            format!("{prefix}{key}:{v}|{kind}\n")
        })
        .collect()
}

/// Packs whole lines into packets of at most `size` bytes (a longer line goes alone).
pub fn pack(lines: &[String], size: usize) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for l in lines {
        if !cur.is_empty() && cur.len() + l.len() > size {
            packets.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(l.as_bytes());
    }
    if !cur.is_empty() {
        packets.push(cur);
    }
    packets
}

/// Runs until the broker exits.
pub async fn run(broker: Arc<Broker>, http_port: u16) {
    let o = &broker.opts;
    let port = if o.broadcast_http_port == 0 {
        http_port
    } else {
        o.broadcast_http_port
    };
    let prefix = prefix(&o.statsd_prefix, &o.broadcast_address, port);
    let every = o.statsd_interval.max(Duration::from_millis(10));
    let mut ticker = interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut prev = Previous::default();
    loop {
        ticker.tick().await;
        if broker.is_exiting() {
            return;
        }
        let addr = &o.statsd_address;
        let socket = match connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                super::log(
                    &o.log_prefix,
                    "ERROR",
                    &format!("failed to create UDP socket to statsd({addr}) - {e}"),
                );
                continue;
            }
        };
        super::log(&o.log_prefix, "INFO", &format!("STATSD: pushing stats to {addr}"));
        let st = stats::collect(&broker, None, None, false, false);
        let lines = lines(
            &st,
            &prefix,
            o.statsd_exclude_ephemeral,
            o.statsd_mem_stats,
            &mut prev,
        );
        let packets = pack(&lines, o.statsd_udp_packet_size.max(1) as usize);
        // Spread over the interval less a second, as nsqd does, so the daemon sees no burst.
        let spread = every.saturating_sub(Duration::from_secs(1));
        let gap = spread / packets.len().max(1) as u32;
        for p in &packets {
            let _ = socket.send(p).await;
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
    }
}

async fn connect(addr: &str) -> std::io::Result<UdpSocket> {
    let target = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let local = if target.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_like_nsqd() {
        assert_eq!(prefix("nsq.%s", "host.example", 4151), "nsq.host_example_4151.");
        assert_eq!(prefix("nsq.%s.", "10.0.0.1", 80), "nsq.10_0_0_1_80.");
        assert_eq!(prefix("", "h", 1), "");
        assert_eq!(prefix("plain", "h", 1), "plain.");
    }

    #[test]
    fn packets_hold_whole_lines() {
        let lines: Vec<String> = (0..10).map(|i| format!("key.{i}:1|c\n")).collect();
        let p = pack(&lines, 30);
        assert!(p.iter().all(|p| p.len() <= 30 && p.ends_with(b"\n")));
        assert_eq!(p.concat(), lines.concat().into_bytes());
        let long = vec!["x".repeat(50)];
        assert_eq!(pack(&long, 30).len(), 1);
    }
}
