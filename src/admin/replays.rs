//! Replays started from the topic page: a dry-run count first, then the run itself in a
//! background task of the admin (the loop `nsqrs replay` uses, `archive::replayer`), whose
//! progress the page polls. Runs are checkpointed in the archive like any other, so one the
//! admin did not finish (it was stopped) can be resumed with `nsqrs replay --resume`.
// Handlers return finished responses as errors; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::api::check_action;
use super::Admin;
use crate::archive::replay::{self, parse_when, Run, Source, Window};
use crate::archive::replayer::{self, Pace};
use crate::archive::Store;
use crate::common::http_api::{err, json_body};
use crate::common::time::now_ns;
use crate::protocol::names::is_valid_topic_name;

type Reply = Result<Response, Response>;

/// Where a run stands, as the page shows it.
#[derive(Debug, Clone)]
pub struct Status {
    pub run_id: String,
    pub from_topic: String,
    pub to_topic: String,
    pub nsqd: String,
    pub total: i64,
    pub done: i64,
    /// `running`, `finished`, `stopped` or `failed`.
    pub state: &'static str,
    pub error: Option<String>,
}

/// The admin's replays, by run ID.
#[derive(Default)]
pub struct Replays {
    runs: Mutex<HashMap<String, Arc<Mutex<Status>>>>,
}

impl Replays {
    pub fn status(&self, run_id: &str) -> Option<Status> {
        self.runs.lock().get(run_id).map(|s| s.lock().clone())
    }

    /// Every run this admin started, newest first.
    pub fn all(&self) -> Vec<Status> {
        let mut v: Vec<Status> = self.runs.lock().values().map(|s| s.lock().clone()).collect();
        v.sort_by(|a, b| b.run_id.cmp(&a.run_id));
        v
    }
}

#[derive(Debug, Deserialize)]
pub struct ReplayRequest {
    pub topic: String,
    #[serde(default)]
    pub to_topic: String,
    /// A duration ago (`2h`) or an RFC 3339 time.
    pub since: String,
    #[serde(default)]
    pub until: String,
    /// Count only.
    #[serde(default)]
    pub dry_run: bool,
    /// The nsqd (TCP) to publish to; by default one that holds the target topic, or any.
    #[serde(default)]
    pub nsqd_tcp_address: String,
}

fn bad(msg: String) -> Response {
    err(400, &msg)
}

/// The window a request names.
fn window(r: &ReplayRequest, now: i64) -> Result<Window, Response> {
    if !is_valid_topic_name(&r.topic) {
        return Err(err(400, "INVALID_TOPIC"));
    }
    if !r.to_topic.is_empty() && !is_valid_topic_name(&r.to_topic) {
        return Err(err(400, "INVALID_TO_TOPIC"));
    }
    let since_ns = parse_when(&r.since, now, "since").map_err(bad)?;
    let until_ns = match r.until.as_str() {
        "" => now + 1,
        u => parse_when(u, now, "until").map_err(bad)?,
    };
    Ok(Window {
        topic: r.topic.clone(),
        since_ns,
        until_ns,
        ids: Vec::new(),
    })
}

fn archive(admin: &Admin) -> Result<&Store, Response> {
    admin
        .archive
        .as_ref()
        .ok_or_else(|| err(400, "NO_ARCHIVE: start the admin with --db"))
}

/// `POST /api/replays`: with `dry_run`, how many messages the window holds; otherwise starts
/// the run and answers its ID.
pub async fn start_replay(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let req: ReplayRequest = serde_json::from_slice(&body).map_err(|e| err(400, &e.to_string()))?;
    let now = now_ns();
    let window = window(&req, now)?;
    let store = archive(&admin)?;
    let count = window
        .count(store, None)
        .await
        .map_err(|e| err(500, &format!("ARCHIVE_ERROR: {e}")))?;
    if req.dry_run {
        return Ok(json_body(&json!({ "count": count, "topic": window.topic })));
    }
    check_action(&admin, &headers)?;
    let to_topic = if req.to_topic.is_empty() {
        req.topic.clone()
    } else {
        req.to_topic.clone()
    };
    let nsqd = match req.nsqd_tcp_address.as_str() {
        "" => target_nsqd(&admin, &to_topic).await?,
        given => given.to_string(),
    };
    let run = Run {
        run_id: format!("{:016x}", now as u64),
        identity: json!({
            "topic": window.topic, "to_topic": to_topic, "since": req.since, "until": req.until,
            "ids": Vec::<String>::new(), "files": Vec::<String>::new(), "via": "admin",
        })
        .to_string(),
        from_topic: window.topic.clone(),
        to_topic: to_topic.clone(),
        since_ns: window.since_ns,
        until_ns: window.until_ns,
        total: count,
        done: 0,
        cursor: None,
        sent: None,
        finished: false,
    };
    replay::create_run(store, &run)
        .await
        .map_err(|e| err(500, &format!("ARCHIVE_ERROR: {e}")))?;
    let status = Arc::new(Mutex::new(Status {
        run_id: run.run_id.clone(),
        from_topic: run.from_topic.clone(),
        to_topic,
        nsqd: nsqd.clone(),
        total: count,
        done: 0,
        state: "running",
        error: None,
    }));
    admin
        .replays
        .runs
        .lock()
        .insert(run.run_id.clone(), status.clone());
    admin.logf(
        "info",
        &format!(
            "replay {}: {count} messages of {} to {} via {nsqd}",
            run.run_id, run.from_topic, run.to_topic
        ),
    );
    let run_id = run.run_id.clone();
    tokio::spawn(run_in_background(
        admin.clone(),
        run,
        Source::Archive(window),
        nsqd,
        status,
    ));
    Ok(json_body(&json!({ "run_id": run_id, "total": count })))
}

/// An nsqd to publish to: one holding the target topic, or else any in the cluster.
async fn target_nsqd(admin: &Admin, topic: &str) -> Result<String, Response> {
    let cluster = admin.cluster();
    let holders = cluster
        .topic_producers(topic)
        .await
        .map(|p| p.value)
        .unwrap_or_default();
    let all = match holders.is_empty() {
        true => cluster.producers().await.map(|p| p.value).unwrap_or_default(),
        false => holders,
    };
    all.first()
        .map(|p| p.tcp_address())
        .ok_or_else(|| err(502, "UPSTREAM_ERROR: no nsqd to publish to"))
}

async fn run_in_background(
    admin: Arc<Admin>,
    mut run: Run,
    source: Source,
    nsqd: String,
    status: Arc<Mutex<Status>>,
) {
    let fail = |e: String| {
        let mut s = status.lock();
        s.state = "failed";
        s.error = Some(e);
    };
    let Some(store) = admin.archive.as_ref() else {
        return fail("no archive".into());
    };
    let producer = match crate::client::Producer::connect(&nsqd, crate::client::Config::default()).await {
        Ok(p) => p,
        Err(e) => return fail(format!("connect to nsqd {nsqd}: {e}")),
    };
    // The admin never stops a run half way; its own exit ends the task, and the checkpoint
    // lets `nsqrs replay --resume` finish it.
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let pace = Pace {
        batch_size: 5000,
        rate: 0,
    };
    let outcome = replayer::drive(store, &source, &mut run, &producer, pace, stop, |event| {
        if let replayer::Event::Progress(done) = event {
            status.lock().done = done;
        }
    })
    .await;
    producer.stop().await;
    match outcome {
        Ok(o) => {
            let mut s = status.lock();
            s.done = run.done;
            s.state = if o.interrupted { "stopped" } else { "finished" };
            admin.logf(
                "info",
                &format!("replay {} {}: {} messages", run.run_id, s.state, run.done),
            );
        }
        Err(e) => {
            admin.logf("error", &format!("replay {} failed - {e}", run.run_id));
            fail(e);
        }
    }
}

/// `GET /api/replays/:run`: the run's progress.
pub async fn replay_progress(State(admin): State<Arc<Admin>>, Path(run_id): Path<String>) -> Reply {
    let s = admin
        .replays
        .status(&run_id)
        .ok_or_else(|| err(404, "REPLAY_NOT_FOUND"))?;
    Ok(json_body(&status_json(&s)))
}

pub fn status_json(s: &Status) -> serde_json::Value {
    json!({
        "run_id": s.run_id, "from_topic": s.from_topic, "to_topic": s.to_topic, "nsqd": s.nsqd,
        "total": s.total, "done": s.done, "state": s.state, "error": s.error,
    })
}
