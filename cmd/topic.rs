//! `nsqrs topic …` and `nsqrs channel …`: the admin's actions from the command line, for
//! scripts, against one or more brokers (`--nsqd-http-address`) or the whole cluster through
//! lookupd (`--lookupd-http-address`). They run exactly what the admin's buttons run
//! (`nsqrs::admin::cluster`), including the safe order of a cluster-wide topic delete.
//!
//! Exit status 0 only when every node did it; each node that failed is one `warning:` line
//! and the status is 1.

use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use nsqrs::admin::cluster::Cluster;
use nsqrs::common::goflags::parse_go_duration;
use nsqrs::common::http_client::HttpTimeouts;
use nsqrs::errln;
use nsqrs::protocol::names::{is_valid_channel_name, is_valid_topic_name};

use crate::tools;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopicAction {
    /// Create the topic (in every lookupd, or on every given nsqd)
    Create,
    /// Delete it everywhere: tombstone in lookupd, delete on each nsqd, then from lookupd
    Delete,
    /// Drop its queued messages on every nsqd holding it (channels keep theirs)
    Empty,
    /// Stop it feeding its channels on every nsqd holding it
    Pause,
    /// Let it feed its channels again on every nsqd holding it
    Unpause,
    /// Tombstone one node's topic in lookupd and delete it on that node (--node)
    Tombstone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelAction {
    /// Create the channel (in every lookupd and on every nsqd holding the topic)
    Create,
    /// Delete it from every nsqd holding the topic and from lookupd
    Delete,
    /// Drop its queued, in-flight and deferred messages on every nsqd
    Empty,
    /// Stop delivering to its consumers on every nsqd
    Pause,
    /// Deliver to its consumers again on every nsqd
    Unpause,
}

/// Where the cluster is, shared by both commands.
#[derive(Debug, Args)]
pub struct Target {
    /// nsqd HTTP address (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub nsqd_http_address: Vec<String>,

    /// nsqlookupd HTTP address: act on the whole cluster (may be given multiple times)
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub lookupd_http_address: Vec<String>,

    /// Bearer token the brokers require (their --http-admin-token) [default: none]
    #[arg(long, value_name = "TOKEN")]
    pub http_admin_token: Option<String>,

    /// How long to wait for each HTTP connection to a broker or lookupd
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_go_duration)]
    pub http_client_connect_timeout: Duration,

    /// How long to wait for each HTTP answer from a broker or lookupd
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub http_client_request_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct TopicArgs {
    /// What to do with the topic
    #[arg(value_enum)]
    pub action: TopicAction,

    /// The topic's name
    #[arg(value_name = "TOPIC")]
    pub topic: String,

    /// The node to tombstone, as lookupd names it: broadcast_address:http_port
    #[arg(long, value_name = "HOST:PORT")]
    pub node: Option<String>,

    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// What to do with the channel
    #[arg(value_enum)]
    pub action: ChannelAction,

    /// The topic the channel belongs to
    #[arg(value_name = "TOPIC")]
    pub topic: String,

    /// The channel's name
    #[arg(value_name = "CHANNEL")]
    pub channel: String,

    #[command(flatten)]
    pub target: Target,
}

impl Target {
    fn cluster(&self) -> Result<Cluster, String> {
        tools::check_sources(&self.nsqd_http_address, &self.lookupd_http_address)
            .map_err(|e| e.replace("--nsqd-tcp-address", "--nsqd-http-address"))?;
        Ok(Cluster {
            lookupd: self.lookupd_http_address.clone(),
            nsqd: self.nsqd_http_address.clone(),
            timeouts: HttpTimeouts {
                connect: self.http_client_connect_timeout,
                request: self.http_client_request_timeout,
            },
            token: self.http_admin_token.clone().filter(|t| !t.is_empty()),
            tls: None,
        })
    }
}

/// The outcome as scripts read it: `OK` and 0, or a warning line per failed node and 1.
fn report(what: &str, r: Result<Vec<String>, String>) -> i32 {
    match r {
        Ok(warnings) if warnings.is_empty() => {
            outln!("OK {what}");
            0
        }
        Ok(warnings) => {
            for w in &warnings {
                errln!("warning: {}", w.replace('\n', " "));
            }
            tools::fail(format!("{what}: {} node(s) failed", warnings.len()))
        }
        Err(e) => tools::fail(e),
    }
}

/// Actions on what nsqd holds need some nsqd to hold it.
async fn held(cluster: &Cluster, topic: &str) -> Result<(), String> {
    let holders = cluster.topic_producers(topic).await?;
    if holders.value.is_empty() {
        return Err(format!("no nsqd holds topic {topic}"));
    }
    Ok(())
}

pub fn run_topic(args: TopicArgs) -> i32 {
    if !is_valid_topic_name(&args.topic) {
        return tools::usage(format!("{:?} is not a valid topic name", args.topic));
    }
    let cluster = match args.target.cluster() {
        Ok(c) => c,
        Err(e) => return tools::usage(e),
    };
    let node = match (args.action, &args.node) {
        (TopicAction::Tombstone, None) => return tools::usage("tombstone needs --node HOST:PORT"),
        (TopicAction::Tombstone, Some(_)) if cluster.lookupd.is_empty() => {
            return tools::usage("tombstone needs --lookupd-http-address (tombstones live in lookupd)")
        }
        (_, node) => node.clone().unwrap_or_default(),
    };
    let topic = args.topic;
    tools::runtime().block_on(async move {
        let (what, r) = match args.action {
            TopicAction::Create => ("created", cluster.create(&topic, None).await),
            TopicAction::Delete => ("deleted", cluster.delete_topic(&topic).await),
            TopicAction::Tombstone => ("tombstoned", cluster.tombstone(&topic, &node).await),
            action => {
                let (word, done) = match action {
                    TopicAction::Empty => ("empty", "emptied"),
                    TopicAction::Pause => ("pause", "paused"),
                    _ => ("unpause", "unpaused"),
                };
                let r = match held(&cluster, &topic).await {
                    Ok(()) => cluster.topic_channel_action(&topic, None, word).await,
                    Err(e) => Err(e),
                };
                (done, r)
            }
        };
        report(&format!("{what} topic {topic}"), r)
    })
}

pub fn run_channel(args: ChannelArgs) -> i32 {
    if !is_valid_topic_name(&args.topic) {
        return tools::usage(format!("{:?} is not a valid topic name", args.topic));
    }
    if !is_valid_channel_name(&args.channel) {
        return tools::usage(format!("{:?} is not a valid channel name", args.channel));
    }
    let cluster = match args.target.cluster() {
        Ok(c) => c,
        Err(e) => return tools::usage(e),
    };
    let (topic, channel) = (args.topic, args.channel);
    tools::runtime().block_on(async move {
        let (what, r) = match args.action {
            ChannelAction::Create => ("created", cluster.create(&topic, Some(&channel)).await),
            ChannelAction::Delete => ("deleted", cluster.delete_channel(&topic, &channel).await),
            action => {
                let (word, done) = match action {
                    ChannelAction::Empty => ("empty", "emptied"),
                    ChannelAction::Pause => ("pause", "paused"),
                    _ => ("unpause", "unpaused"),
                };
                let r = match held(&cluster, &topic).await {
                    Ok(()) => cluster.topic_channel_action(&topic, Some(&channel), word).await,
                    Err(e) => Err(e),
                };
                (done, r)
            }
        };
        report(&format!("{what} channel {topic}/{channel}"), r)
    })
}
