//! The bench's results as data (`Report`, serialised as-is for `--format json`) and as the
//! human table. Both carry the same numbers; the table only rounds them.

use super::latency::LatencyStats;
use super::load::RoleStats;
use super::memory::MemoryStats;
use comfy_table::{presets::ASCII_MARKDOWN, CellAlignment, Table};
use serde::Serialize;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub server: ServerSummary,
    pub config: ConfigSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer: Option<Throughput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader: Option<Throughput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_memory: Option<ServerMemory>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    pub address: String,
    /// From the IDENTIFY reply; absent when the server does not negotiate features.
    pub version: Option<String>,
    pub output_buffer_size: Option<i64>,
    pub output_buffer_timeout_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    pub topic: String,
    pub channel: String,
    pub size: usize,
    pub batch_size: usize,
    pub runfor_secs: f64,
    pub connections: usize,
    pub rdy: u64,
    pub rate: Option<u64>,
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub connections: usize,
    pub messages: u64,
    pub bytes: u64,
    pub duration_secs: f64,
    pub msgs_per_sec: f64,
    pub mib_per_sec: f64,
    /// bench_writer's figure: run duration divided by messages acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_op: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fin_failed: Option<u64>,
    /// Writers: publish latency, from sending a batch to its `OK`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok_p99_us: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub rate: u64,
    pub published: u64,
    pub publish_rate: f64,
    pub received: u64,
    pub lost: u64,
    pub ignored: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerMemory {
    pub pid: u32,
    pub rss_start_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_end_kib: u64,
    pub vm_hwm_kib: u64,
    pub samples: u64,
    pub exited: bool,
}

impl Throughput {
    pub fn writer(s: &RoleStats) -> Self {
        let mut t = Self::reader(s);
        t.fin_failed = None;
        t.us_per_op = Some(if s.messages == 0 {
            0.0
        } else {
            s.duration.as_secs_f64() * 1e6 / s.messages as f64
        });
        if s.ack_latency.count() > 0 {
            t.ok_p50_us = Some(s.ack_latency.quantile(0.5) as f64 / 1e3);
            t.ok_p99_us = Some(s.ack_latency.quantile(0.99) as f64 / 1e3);
        }
        t
    }

    pub fn reader(s: &RoleStats) -> Self {
        let secs = s.duration.as_secs_f64();
        let per_sec = |v: f64| if secs > 0.0 { v / secs } else { 0.0 };
        Throughput {
            connections: s.connections,
            messages: s.messages,
            bytes: s.bytes,
            duration_secs: secs,
            msgs_per_sec: per_sec(s.messages as f64),
            mib_per_sec: per_sec(s.bytes as f64) / MIB,
            us_per_op: None,
            fin_failed: Some(s.fin_failed),
            ok_p50_us: None,
            ok_p99_us: None,
        }
    }
}

impl From<&LatencyStats> for Latency {
    fn from(s: &LatencyStats) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        let h = &s.histogram;
        let secs = s.publish_duration.as_secs_f64();
        Latency {
            rate: s.rate,
            published: s.published,
            publish_rate: if secs > 0.0 {
                s.published as f64 / secs
            } else {
                0.0
            },
            received: s.received,
            lost: s.published.saturating_sub(s.received),
            ignored: s.ignored,
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.quantile(0.5)),
            p99_us: us(h.quantile(0.99)),
            p999_us: us(h.quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

impl From<&MemoryStats> for ServerMemory {
    fn from(m: &MemoryStats) -> Self {
        ServerMemory {
            pid: m.pid,
            rss_start_kib: m.rss_start_kib,
            rss_peak_kib: m.rss_peak_kib,
            rss_end_kib: m.rss_end_kib,
            vm_hwm_kib: m.vm_hwm_kib,
            samples: m.samples,
            exited: m.exited,
        }
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(ASCII_MARKDOWN).set_header(header.to_vec());
    t
}

fn right_align(t: &mut Table, from: usize) {
    let columns = t.column_count();
    for i in from..columns {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_table(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "nsqrs bench: mode {} against {} (server version {})\ntopic {}, channel {}, {} B messages, batch {}, rdy {}, runfor {}s\n",
            self.mode,
            self.server.address,
            self.server.version.as_deref().unwrap_or("unknown"),
            c.topic,
            c.channel,
            c.size,
            c.batch_size,
            c.rdy,
            c.runfor_secs,
        );
        let roles = [("writer", &self.writer), ("reader", &self.reader)];
        if roles.iter().any(|(_, r)| r.is_some()) {
            let mut t = table(&[
                "role",
                "conns",
                "messages",
                "duration s",
                "msg/s",
                "MiB/s",
                "µs/op",
                "OK p50 µs",
                "OK p99 µs",
            ]);
            for (name, role) in roles {
                if let Some(r) = role {
                    t.add_row(vec![
                        name.to_string(),
                        r.connections.to_string(),
                        r.messages.to_string(),
                        format!("{:.3}", r.duration_secs),
                        format!("{:.0}", r.msgs_per_sec),
                        format!("{:.3}", r.mib_per_sec),
                        r.us_per_op.map(|v| format!("{v:.3}")).unwrap_or_default(),
                        r.ok_p50_us.map(|v| format!("{v:.0}")).unwrap_or_default(),
                        r.ok_p99_us.map(|v| format!("{v:.0}")).unwrap_or_default(),
                    ]);
                }
            }
            right_align(&mut t, 1);
            out.push_str(&format!("\n{t}\n"));
        }
        if let Some(l) = &self.latency {
            let mut t = table(&[
                "rate",
                "published",
                "received",
                "lost",
                "ignored",
                "min µs",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "max µs",
            ]);
            t.add_row(vec![
                l.rate.to_string(),
                l.published.to_string(),
                l.received.to_string(),
                l.lost.to_string(),
                l.ignored.to_string(),
                format!("{:.1}", l.min_us),
                format!("{:.1}", l.p50_us),
                format!("{:.1}", l.p99_us),
                format!("{:.1}", l.p999_us),
                format!("{:.1}", l.max_us),
            ]);
            right_align(&mut t, 0);
            out.push_str(&format!("\n{t}\n"));
        }
        if let Some(m) = &self.server_memory {
            let mut t = table(&[
                "server pid",
                "RSS start KiB",
                "RSS peak KiB",
                "RSS end KiB",
                "VmHWM KiB",
                "samples",
            ]);
            t.add_row(vec![
                format!("{}{}", m.pid, if m.exited { " (exited)" } else { "" }),
                m.rss_start_kib.to_string(),
                m.rss_peak_kib.to_string(),
                m.rss_end_kib.to_string(),
                m.vm_hwm_kib.to_string(),
                m.samples.to_string(),
            ]);
            right_align(&mut t, 0);
            out.push_str(&format!("\n{t}\n"));
        }
        out
    }
}
