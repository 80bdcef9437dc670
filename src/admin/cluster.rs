//! The admin's only way to the cluster: HTTP to the lookupds and nsqds it was given, as
//! nsqadmin's clusterinfo does. It reads topics, producers and `/stats`, and carries out the
//! actions (create, pause, unpause, empty, delete, tombstone) on every node concerned.
//!
//! With lookupds, the nsqds are whatever they report; without, the `--nsqd-http-address`
//! list. A node that does not answer does not sink the whole answer: what the others said is
//! returned with the failures as warnings (nsqadmin's "partial error"), and only when nobody
//! answered is it an error.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinSet;

use super::stats::{version_key, ChannelStats, NodeStats, Producer, ProducerTopic, TopicStats};
use crate::common::http_client::{
    self as http, api_url, query_escape, HttpClient, HttpTimeouts, Request, ACCEPT_NSQ_V1,
};
use crate::replication::status::ReplicationStatus;

/// Where the cluster is and how to talk to it.
#[derive(Clone)]
pub struct Cluster {
    pub lookupd: Vec<String>,
    pub nsqd: Vec<String>,
    pub timeouts: HttpTimeouts,
    /// Sent as a bearer token with every action, for brokers started with
    /// `--http-admin-token`.
    pub token: Option<String>,
    /// For `https://` addresses.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// An answer, and the failures of the nodes that did not contribute to it.
#[derive(Debug)]
pub struct Partial<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

impl<T> Partial<T> {
    fn new(value: T, warnings: Vec<String>) -> Partial<T> {
        Partial { value, warnings }
    }
}

/// Fails only when every one of `total` sources failed, as nsqadmin does.
fn all_failed(kind: &str, total: usize, errors: &[String]) -> Result<(), String> {
    if total > 0 && errors.len() == total {
        Err(format!("failed to query any {kind}: {}", errors.join("; ")))
    } else {
        Ok(())
    }
}

/// `/stats`'s reply body, read leniently (older nsqd wrap it in `{"data": ...}`).
fn unwrap_envelope(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.contains_key("status_code") && m.contains_key("data") => {
            m.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    }
}

impl Cluster {
    /// One request to `addr` (`host:port` or `http[s]://host:port`) in NSQ's V1 format, with
    /// the bearer token when `with_token`; the status and the body.
    async fn send(
        &self,
        method: &'static str,
        addr: &str,
        path: &str,
        with_token: bool,
    ) -> Result<(u16, Bytes), String> {
        let bearer = self
            .token
            .as_deref()
            .filter(|_| with_token)
            .map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Accept", ACCEPT_NSQ_V1)];
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        let mut client = HttpClient::new(self.timeouts);
        if let Some(tls) = &self.tls {
            client = client.with_tls(tls.clone());
        }
        let reply = client
            .send(Request {
                method,
                url: &api_url(addr, path),
                headers: &headers,
                body: Bytes::new(),
            })
            .await?;
        Ok((reply.status, reply.body))
    }

    async fn get<T: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<T, String> {
        let (status, body) = self.send("GET", addr, path, false).await?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "GET {}{path}: status {status}: {}",
                http::host_port(addr),
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {}{path}: invalid JSON: {e}", http::host_port(addr)))?;
        serde_json::from_value(unwrap_envelope(v))
            .map_err(|e| format!("GET {}{path}: unexpected JSON: {e}", http::host_port(addr)))
    }

    /// POSTs an action; the bearer token goes along.
    async fn post(&self, addr: &str, path: &str) -> Result<(), String> {
        let (status, body) = self.send("POST", addr, path, true).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "POST {}{path}: status {status}: {}",
                http::host_port(addr),
                String::from_utf8_lossy(&body).trim()
            ))
        }
    }

    /// GETs `path` from each of `addrs` at once; results in `addrs` order.
    async fn get_each<T>(
        &self,
        addrs: &[String],
        path: impl Fn(&str) -> String,
    ) -> Vec<(String, Result<T, String>)>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let mut set = JoinSet::new();
        for (i, addr) in addrs.iter().enumerate() {
            let me = self.clone();
            let addr = addr.clone();
            let path = path(&addr);
            set.spawn(async move {
                let r = me.get::<T>(&addr, &path).await;
                (i, addr, r)
            });
        }
        let mut out = Vec::with_capacity(addrs.len());
        while let Some(done) = set.join_next().await {
            if let Ok(one) = done {
                out.push(one);
            }
        }
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, a, r)| (a, r)).collect()
    }

    /// Every topic: the union of what the lookupds know, or of what the nsqds hold.
    pub async fn topics(&self) -> Result<Partial<Vec<String>>, String> {
        let mut topics = BTreeSet::new();
        let mut errors = Vec::new();
        if !self.lookupd.is_empty() {
            for (_, r) in self.get_each::<Value>(&self.lookupd, |_| "/topics".into()).await {
                match r {
                    Ok(v) => topics.extend(strings(&v["topics"])),
                    Err(e) => errors.push(e),
                }
            }
            all_failed("nsqlookupd", self.lookupd.len(), &errors)?;
        } else {
            let path = |_: &str| "/stats?format=json&include_clients=false&include_mem=false".to_string();
            for (_, r) in self.get_each::<NodeStats>(&self.nsqd, path).await {
                match r {
                    Ok(s) => topics.extend(s.topics.unwrap_or_default().into_iter().map(|t| t.topic_name)),
                    Err(e) => errors.push(e),
                }
            }
            all_failed("nsqd", self.nsqd.len(), &errors)?;
        }
        Ok(Partial::new(topics.into_iter().collect(), errors))
    }

    /// The channels lookupd knows for `topic`.
    pub async fn lookupd_channels(&self, topic: &str) -> Result<Partial<Vec<String>>, String> {
        let mut channels = BTreeSet::new();
        let mut errors = Vec::new();
        let path = |_: &str| format!("/channels?topic={}", query_escape(topic));
        for (_, r) in self.get_each::<Value>(&self.lookupd, path).await {
            match r {
                Ok(v) => channels.extend(strings(&v["channels"])),
                Err(e) => errors.push(e),
            }
        }
        all_failed("nsqlookupd", self.lookupd.len(), &errors)?;
        Ok(Partial::new(channels.into_iter().collect(), errors))
    }

    /// Every nsqd, as `/api/nodes` lists them.
    pub async fn producers(&self) -> Result<Partial<Vec<Producer>>, String> {
        if self.lookupd.is_empty() {
            return self.nsqd_producers(&self.nsqd, None).await;
        }
        let mut errors = Vec::new();
        let mut producers: Vec<Producer> = Vec::new();
        for (addr, r) in self.get_each::<Value>(&self.lookupd, |_| "/nodes".into()).await {
            let v = match r {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for p in v["producers"].as_array().into_iter().flatten() {
                let fresh = lookupd_producer(p);
                let remote = format!(
                    "{}/{}",
                    http::host_port(&addr),
                    if fresh.remote_address.is_empty() {
                        "N/A"
                    } else {
                        &fresh.remote_address
                    }
                );
                let existing = producers
                    .iter_mut()
                    .find(|q| q.tcp_address() == fresh.tcp_address());
                let entry = match existing {
                    Some(e) => e,
                    None => {
                        producers.push(fresh);
                        producers.last_mut().expect("just pushed")
                    }
                };
                entry.remote_addresses.get_or_insert_with(Vec::new).push(remote);
            }
        }
        all_failed("nsqlookupd", self.lookupd.len(), &errors)?;
        mark_out_of_date(&mut producers);
        producers.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(Partial::new(producers, errors))
    }

    /// The nsqds that hold `topic`.
    pub async fn topic_producers(&self, topic: &str) -> Result<Partial<Vec<Producer>>, String> {
        if self.lookupd.is_empty() {
            return self.nsqd_producers(&self.nsqd, Some(topic)).await;
        }
        let mut errors = Vec::new();
        let mut producers: Vec<Producer> = Vec::new();
        let path = |_: &str| format!("/lookup?topic={}", query_escape(topic));
        for (_, r) in self.get_each::<Value>(&self.lookupd, path).await {
            match r {
                Ok(v) => {
                    for p in v["producers"].as_array().into_iter().flatten() {
                        let p = lookupd_producer(p);
                        if !producers.iter().any(|q| q.http_address() == p.http_address()) {
                            producers.push(p);
                        }
                    }
                }
                // A topic no nsqd registered is a 404 from that lookupd: no producers there.
                Err(e) if e.contains("status 404") => {}
                Err(e) => errors.push(e),
            }
        }
        all_failed("nsqlookupd", self.lookupd.len(), &errors)?;
        Ok(Partial::new(producers, errors))
    }

    /// Producers from the nsqds' own `/info` and `/stats`; only those holding `topic`, if
    /// given.
    async fn nsqd_producers(
        &self,
        addrs: &[String],
        topic: Option<&str>,
    ) -> Result<Partial<Vec<Producer>>, String> {
        let mut errors = Vec::new();
        let mut producers = Vec::new();
        let infos = self.get_each::<Value>(addrs, |_| "/info".into()).await;
        let path = |_: &str| "/stats?format=json&include_clients=false&include_mem=false".to_string();
        let stats = self.get_each::<NodeStats>(addrs, path).await;
        for ((addr, info), (_, stats)) in infos.into_iter().zip(stats) {
            let (info, stats) = match (info, stats) {
                (Ok(i), Ok(s)) => (i, s),
                (Err(e), _) | (_, Err(e)) => {
                    errors.push(e);
                    continue;
                }
            };
            let topics: Vec<ProducerTopic> = stats
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| ProducerTopic {
                    topic: t.topic_name,
                    tombstoned: false,
                })
                .collect();
            if topic.is_some_and(|want| !topics.iter().any(|t| t.topic == want)) {
                continue;
            }
            let port = |k: &str| info[k].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            let mut p = Producer {
                remote_addresses: None,
                remote_address: String::new(),
                hostname: info["hostname"].as_str().unwrap_or("").to_string(),
                broadcast_address: info["broadcast_address"].as_str().unwrap_or("").to_string(),
                tcp_port: port("tcp_port"),
                http_port: port("http_port"),
                version: info["version"].as_str().unwrap_or("").to_string(),
                topics,
                out_of_date: false,
            };
            // Where /info says nothing, the address the admin was given stands in; so does an
            // https:// address, which is how this node's API is reached (its HTTPS port).
            let hp = http::host_port(&addr);
            if p.broadcast_address.is_empty() || p.http_port == 0 || addr.starts_with("https://") {
                if let Some((h, port)) = hp.rsplit_once(':') {
                    p.broadcast_address = h.trim_start_matches('[').trim_end_matches(']').to_string();
                    p.http_port = port.parse().unwrap_or(0);
                }
            }
            if p.hostname.is_empty() {
                p.hostname = p.broadcast_address.clone();
            }
            producers.push(p);
        }
        all_failed("nsqd", addrs.len(), &errors)?;
        mark_out_of_date(&mut producers);
        Ok(Partial::new(producers, errors))
    }

    /// The address to reach a producer's HTTP API at: the one the admin was given when it
    /// names the same node (it may carry `https://`), else `host:port`.
    pub fn http_address_of(&self, p: &Producer) -> String {
        let name = p.http_address();
        self.nsqd
            .iter()
            .find(|a| http::host_port(a) == name)
            .cloned()
            .unwrap_or(name)
    }

    /// Each producer's replication state (`GET /replication`), `None` where the node has none
    /// to report (Go nsqd, an older nsqrs) or could not be asked.
    pub async fn replication(&self, producers: &[Producer]) -> Vec<Option<ReplicationStatus>> {
        let addrs: Vec<String> = producers.iter().map(|p| self.http_address_of(p)).collect();
        self.get_each::<ReplicationStatus>(&addrs, |_| "/replication".to_string())
            .await
            .into_iter()
            .map(|(_, r)| r.ok())
            .collect()
    }

    /// Each producer's `/stats`, tagged with its node: the rows of `topic` (or all), with
    /// clients if asked.
    pub async fn node_stats(
        &self,
        producers: &[Producer],
        topic: Option<&str>,
        channel: Option<&str>,
        include_clients: bool,
    ) -> Result<Partial<Vec<TopicStats>>, String> {
        let mut path = "/stats?format=json&include_mem=false".to_string();
        if let Some(t) = topic {
            path.push_str(&format!("&topic={}", query_escape(t)));
            if let Some(c) = channel {
                path.push_str(&format!("&channel={}", query_escape(c)));
            }
        }
        if !include_clients {
            path.push_str("&include_clients=false");
        }
        let addrs: Vec<String> = producers.iter().map(|p| self.http_address_of(p)).collect();
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for ((_, r), p) in self
            .get_each::<NodeStats>(&addrs, |_| path.clone())
            .await
            .into_iter()
            .zip(producers)
        {
            match r {
                Ok(stats) => rows.extend(
                    stats
                        .tagged(&p.http_address(), &p.hostname)
                        .into_iter()
                        .filter(|t| topic.is_none_or(|want| t.topic_name == want)),
                ),
                Err(e) => errors.push(e),
            }
        }
        all_failed("nsqd", producers.len(), &errors)?;
        rows.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(Partial::new(rows, errors))
    }

    /// One channel's rows on every node that has it.
    pub fn channel_rows(rows: &[TopicStats], channel: &str) -> Vec<ChannelStats> {
        rows.iter()
            .flat_map(|t| t.channels.iter())
            .filter(|c| c.channel_name == channel)
            .cloned()
            .collect()
    }

    /// POSTs `path` to every lookupd; the failures.
    pub async fn lookupd_post(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        for addr in &self.lookupd {
            if let Err(e) = self.post(addr, path).await {
                errors.push(e);
            }
        }
        errors
    }

    /// POSTs `path` to each producer; the failures.
    pub async fn producers_post(&self, producers: &[Producer], path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        for p in producers {
            if let Err(e) = self.post(&self.http_address_of(p), path).await {
                errors.push(e);
            }
        }
        errors
    }

    /// Pause, unpause or empty a topic (`channel` None) or channel on every nsqd holding the
    /// topic. `action` is nsqd's path word: `pause`, `unpause`, `empty`.
    pub async fn topic_channel_action(
        &self,
        topic: &str,
        channel: Option<&str>,
        action: &str,
    ) -> Result<Vec<String>, String> {
        let producers = self.topic_producers(topic).await?;
        let path = match channel {
            Some(c) => format!(
                "/channel/{action}?topic={}&channel={}",
                query_escape(topic),
                query_escape(c)
            ),
            None => format!("/topic/{action}?topic={}", query_escape(topic)),
        };
        let mut warnings = producers.warnings;
        warnings.extend(self.producers_post(&producers.value, &path).await);
        Ok(warnings)
    }

    /// Creates a topic (and channel) in every lookupd, and the channel on every nsqd that
    /// holds the topic; without lookupd, on every nsqd.
    pub async fn create(&self, topic: &str, channel: Option<&str>) -> Result<Vec<String>, String> {
        let t = query_escape(topic);
        let mut warnings = Vec::new();
        if self.lookupd.is_empty() {
            let all = self.nsqd_producers(&self.nsqd, None).await?;
            warnings.extend(all.warnings);
            warnings.extend(
                self.producers_post(&all.value, &format!("/topic/create?topic={t}"))
                    .await,
            );
            if let Some(c) = channel {
                let path = format!("/channel/create?topic={t}&channel={}", query_escape(c));
                warnings.extend(self.producers_post(&all.value, &path).await);
            }
            return Ok(warnings);
        }
        warnings.extend(self.lookupd_post(&format!("/topic/create?topic={t}")).await);
        if let Some(c) = channel {
            let path = format!("/channel/create?topic={t}&channel={}", query_escape(c));
            warnings.extend(self.lookupd_post(&path).await);
            let producers = self.topic_producers(topic).await?;
            warnings.extend(producers.warnings);
            warnings.extend(self.producers_post(&producers.value, &path).await);
        }
        Ok(warnings)
    }

    /// Deletes a topic from the cluster in the order that keeps consumers from re-creating
    /// it (README, "Deleting a topic from a cluster"): tombstone every producer in every
    /// lookupd, delete it on every producer, then delete it from every lookupd.
    pub async fn delete_topic(&self, topic: &str) -> Result<Vec<String>, String> {
        let t = query_escape(topic);
        let producers = self.topic_producers(topic).await?;
        let mut warnings = producers.warnings;
        for p in &producers.value {
            let node = query_escape(&p.http_address());
            warnings.extend(
                self.lookupd_post(&format!("/topic/tombstone?topic={t}&node={node}"))
                    .await,
            );
        }
        warnings.extend(
            self.producers_post(&producers.value, &format!("/topic/delete?topic={t}"))
                .await,
        );
        warnings.extend(self.lookupd_post(&format!("/topic/delete?topic={t}")).await);
        Ok(warnings)
    }

    /// Deletes a channel on every producer of its topic and from every lookupd.
    pub async fn delete_channel(&self, topic: &str, channel: &str) -> Result<Vec<String>, String> {
        let path = format!(
            "/channel/delete?topic={}&channel={}",
            query_escape(topic),
            query_escape(channel)
        );
        let producers = self.topic_producers(topic).await?;
        let mut warnings = producers.warnings;
        warnings.extend(self.lookupd_post(&path).await);
        warnings.extend(self.producers_post(&producers.value, &path).await);
        Ok(warnings)
    }

    /// Tombstones one node's topic in every lookupd, then deletes the topic on that node
    /// (nsqadmin's "tombstone" on the node page).
    pub async fn tombstone(&self, topic: &str, node: &str) -> Result<Vec<String>, String> {
        let t = query_escape(topic);
        let mut warnings = self
            .lookupd_post(&format!("/topic/tombstone?topic={t}&node={}", query_escape(node)))
            .await;
        let target = self
            .nsqd
            .iter()
            .find(|a| http::host_port(a) == node)
            .cloned()
            .unwrap_or_else(|| node.to_string());
        if let Err(e) = self.post(&target, &format!("/topic/delete?topic={t}")).await {
            warnings.push(e);
        }
        Ok(warnings)
    }

    /// GETs one nsqd path as JSON, for the nsqrs pages (`/deferred`, `/message`); the status
    /// and body on failure.
    pub async fn nsqd_get(&self, node: &str, path: &str) -> Result<Value, (u16, String)> {
        let (status, body) = self.send("GET", node, path, true).await.map_err(|e| (502, e))?;
        if !(200..300).contains(&status) {
            return Err((status, String::from_utf8_lossy(&body).trim().to_string()));
        }
        serde_json::from_slice(&body).map_err(|e| (502, format!("invalid JSON from {node}: {e}")))
    }

    /// POSTs one nsqd path with the token, for the nsqrs actions (`/deferred/cancel`).
    pub async fn nsqd_post(&self, node: &str, path: &str) -> Result<(), String> {
        self.post(node, path).await
    }
}

/// A producer as lookupd's `/nodes` or `/lookup` lists it.
fn lookupd_producer(p: &Value) -> Producer {
    let text = |k: &str| p[k].as_str().unwrap_or("").to_string();
    let port = |k: &str| p[k].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
    let tombstones: Vec<bool> = p["tombstones"]
        .as_array()
        .map(|a| a.iter().map(|b| b.as_bool().unwrap_or(false)).collect())
        .unwrap_or_default();
    let mut topics: Vec<ProducerTopic> = strings(&p["topics"])
        .into_iter()
        .enumerate()
        .map(|(i, topic)| ProducerTopic {
            topic,
            tombstoned: tombstones.get(i).copied().unwrap_or(false),
        })
        .collect();
    topics.sort();
    Producer {
        remote_addresses: None,
        remote_address: text("remote_address"),
        hostname: text("hostname"),
        broadcast_address: text("broadcast_address"),
        tcp_port: port("tcp_port"),
        http_port: port("http_port"),
        version: text("version"),
        topics,
        out_of_date: false,
    }
}

fn mark_out_of_date(producers: &mut [Producer]) {
    let newest = producers
        .iter()
        .map(|p| version_key(&p.version))
        .max()
        .unwrap_or_default();
    for p in producers {
        p.out_of_date = version_key(&p.version) < newest;
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}
