//! `GET /metrics`: the figures of `/stats` in Prometheus' text exposition format (0.0.4), so a
//! Prometheus server can scrape nsqrs without an exporter. Counters end in `_total`; e2e
//! latency quantiles are gauges in seconds with a `quantile` label.

use std::fmt::Write;

use crate::nsqd::broker::stats::{E2eStats, Stats};

/// One metric family: its samples are written under a single HELP/TYPE header.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut l = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                l.push(',');
            }
            let _ = write!(l, "{k}=\"{}\"", escape(v));
        }
        self.samples.push((l, value));
    }
}

/// Label values may hold anything a client put in IDENTIFY.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn e2e(f: &mut Family, count: &mut Family, labels: &[(&str, &str)], e: &E2eStats) {
    let Some(ps) = &e.percentiles else {
        return;
    };
    for q in ps {
        let quantile = q.quantile.to_string();
        let mut l = labels.to_vec();
        l.push(("quantile", &quantile));
        f.add(&l, q.value / 1e9);
    }
    count.add(labels, e.count as f64);
}

pub fn render(stats: &Stats, rss_bytes: u64) -> String {
    let mut topic_depth = Family::new("nsqrs_topic_depth", "gauge", "Messages queued in the topic.");
    let mut topic_backend = Family::new(
        "nsqrs_topic_backend_depth",
        "gauge",
        "Messages of the topic held on disk.",
    );
    let mut topic_msgs = Family::new(
        "nsqrs_topic_messages_total",
        "counter",
        "Messages published to the topic.",
    );
    let mut topic_bytes = Family::new(
        "nsqrs_topic_message_bytes_total",
        "counter",
        "Bytes of message bodies published to the topic.",
    );
    let mut topic_paused = Family::new("nsqrs_topic_paused", "gauge", "1 when the topic is paused.");
    let mut topic_e2e = Family::new(
        "nsqrs_topic_e2e_processing_latency_seconds",
        "gauge",
        "Publish-to-FIN latency quantiles over the e2e window, all channels merged.",
    );
    let mut topic_e2e_n = Family::new(
        "nsqrs_topic_e2e_processing_latency_samples",
        "gauge",
        "FINs in the current e2e window, all channels.",
    );
    let mut ch_depth = Family::new("nsqrs_channel_depth", "gauge", "Messages queued in the channel.");
    let mut ch_backend = Family::new(
        "nsqrs_channel_backend_depth",
        "gauge",
        "Messages of the channel held on disk.",
    );
    let mut ch_in_flight = Family::new(
        "nsqrs_channel_in_flight",
        "gauge",
        "Messages delivered and not yet finished.",
    );
    let mut ch_deferred = Family::new("nsqrs_channel_deferred", "gauge", "Deferred messages.");
    let mut ch_clients = Family::new("nsqrs_channel_clients", "gauge", "Connected consumers.");
    let mut ch_paused = Family::new("nsqrs_channel_paused", "gauge", "1 when the channel is paused.");
    let mut ch_msgs = Family::new(
        "nsqrs_channel_messages_total",
        "counter",
        "Messages that reached the channel.",
    );
    let mut ch_requeue = Family::new(
        "nsqrs_channel_requeued_total",
        "counter",
        "Messages requeued (REQ).",
    );
    let mut ch_timeout = Family::new(
        "nsqrs_channel_timed_out_total",
        "counter",
        "In-flight messages that timed out.",
    );
    let mut ch_e2e = Family::new(
        "nsqrs_channel_e2e_processing_latency_seconds",
        "gauge",
        "Publish-to-FIN latency quantiles over the e2e window.",
    );
    let mut ch_e2e_n = Family::new(
        "nsqrs_channel_e2e_processing_latency_samples",
        "gauge",
        "FINs in the current e2e window.",
    );
    let mut cl_ready = Family::new("nsqrs_client_ready", "gauge", "The consumer's RDY count.");
    let mut cl_in_flight = Family::new(
        "nsqrs_client_in_flight",
        "gauge",
        "Messages in flight to the consumer.",
    );
    let mut cl_msgs = Family::new(
        "nsqrs_client_messages_total",
        "counter",
        "Messages delivered to the consumer.",
    );
    let mut cl_fin = Family::new(
        "nsqrs_client_finished_total",
        "counter",
        "Messages the consumer finished.",
    );
    let mut cl_req = Family::new(
        "nsqrs_client_requeued_total",
        "counter",
        "Messages the consumer requeued.",
    );

    for t in stats.topics.iter().flatten() {
        let tl = [("topic", t.topic_name.as_str())];
        topic_depth.add(&tl, t.depth as f64);
        topic_backend.add(&tl, t.backend_depth as f64);
        topic_msgs.add(&tl, t.message_count as f64);
        topic_bytes.add(&tl, t.message_bytes as f64);
        topic_paused.add(&tl, t.paused as u8 as f64);
        e2e(&mut topic_e2e, &mut topic_e2e_n, &tl, &t.e2e_processing_latency);
        for c in &t.channels {
            let cl = [
                ("topic", t.topic_name.as_str()),
                ("channel", c.channel_name.as_str()),
            ];
            ch_depth.add(&cl, c.depth as f64);
            ch_backend.add(&cl, c.backend_depth as f64);
            ch_in_flight.add(&cl, c.in_flight_count as f64);
            ch_deferred.add(&cl, c.deferred_count as f64);
            ch_clients.add(&cl, c.client_count as f64);
            ch_paused.add(&cl, c.paused as u8 as f64);
            ch_msgs.add(&cl, c.message_count as f64);
            ch_requeue.add(&cl, c.requeue_count as f64);
            ch_timeout.add(&cl, c.timeout_count as f64);
            e2e(&mut ch_e2e, &mut ch_e2e_n, &cl, &c.e2e_processing_latency);
            for client in c.clients.iter().flatten() {
                let l = [
                    ("topic", t.topic_name.as_str()),
                    ("channel", c.channel_name.as_str()),
                    ("client_id", client.client_id.as_str()),
                    ("remote_address", client.remote_address.as_str()),
                ];
                cl_ready.add(&l, client.ready_count as f64);
                cl_in_flight.add(&l, client.in_flight_count as f64);
                cl_msgs.add(&l, client.message_count as f64);
                cl_fin.add(&l, client.finish_count as f64);
                cl_req.add(&l, client.requeue_count as f64);
            }
        }
    }
    let mut healthy = Family::new("nsqrs_healthy", "gauge", "1 when /ping answers OK.");
    healthy.add(&[], (stats.health == "OK") as u8 as f64);
    let mut rss = Family::new(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    rss.add(&[], rss_bytes as f64);

    let mut out = String::new();
    for f in [
        topic_depth,
        topic_backend,
        topic_msgs,
        topic_bytes,
        topic_paused,
        topic_e2e,
        topic_e2e_n,
        ch_depth,
        ch_backend,
        ch_in_flight,
        ch_deferred,
        ch_clients,
        ch_paused,
        ch_msgs,
        ch_requeue,
        ch_timeout,
        ch_e2e,
        ch_e2e_n,
        cl_ready,
        cl_in_flight,
        cl_msgs,
        cl_fin,
        cl_req,
        healthy,
        rss,
    ] {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, v) in &f.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {v}", f.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {v}", f.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
