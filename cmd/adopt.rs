//! `nsqrs adopt`: asks a broker (the adopter) to take over a lost broker's replicated messages
//! (docs/replication.md): `POST /replication/adopt?node=<owner>` on the adopter, then prints
//! what was adopted.

use std::time::Duration;

use clap::Args;
use nsqrs::common::http_client::{api_url, query_escape, HttpClient, HttpTimeouts, Request, Response};

use crate::tools;

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The lost broker: its node id, its name (broadcast address:TCP port) or TCP address
    #[arg(long, value_name = "NODE")]
    pub node: String,

    /// HTTP address of the broker that holds the copy and adopts it
    #[arg(long, value_name = "ADDR")]
    pub nsqd_http_address: String,

    /// Bearer token, when the adopter runs with --http-admin-token [default: none]
    #[arg(long, value_name = "TOKEN")]
    pub http_admin_token: Option<String>,

    /// How long to wait for the adoption to finish (a large copy takes a while)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = nsqrs::common::goflags::parse_go_duration)]
    pub timeout: Duration,
}

pub fn run(args: AdoptArgs) -> i32 {
    if args.node.is_empty() {
        return tools::usage("--node must name the lost broker");
    }
    tools::runtime().block_on(async move {
        let timeouts = HttpTimeouts {
            connect: Duration::from_secs(2),
            request: args.timeout,
        };
        let path = format!("/replication/adopt?node={}", query_escape(&args.node));
        let bearer = args
            .http_admin_token
            .as_deref()
            .map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
        let req = Request {
            method: "POST",
            url: &api_url(&args.nsqd_http_address, &path),
            headers: &headers,
            body: Default::default(),
        };
        match HttpClient::new(timeouts).send(req).await {
            Ok(Response { status: 200, body }) => {
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                for r in doc["adopted"].as_array().into_iter().flatten() {
                    outln!(
                        "adopted {} ({}, epoch {}): {} messages on {} topics",
                        r["name"].as_str().unwrap_or(""),
                        r["owner"].as_str().unwrap_or(""),
                        r["epoch"],
                        r["messages"],
                        r["topics"].as_object().map_or(0, |t| t.len())
                    );
                    for (topic, n) in r["topics"].as_object().into_iter().flatten() {
                        outln!("  {topic}: {n}");
                    }
                }
                0
            }
            Ok(Response { status, body }) => {
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let why = doc["error"]
                    .as_str()
                    .or(doc["message"].as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                tools::fail(format!("adoption refused ({status}): {why}"))
            }
            Err(e) => tools::fail(e),
        }
    })
}
