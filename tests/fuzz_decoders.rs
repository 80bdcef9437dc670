//! Fuzzing of every pure decoder a client, a peer or the disk can feed: the V2 command parser,
//! IDENTIFY, the snappy and deflate stream decoders, the lookupd V1 request parser and its
//! IDENTIFY body, the topic log's record decoder and segment scan, and the lifecycle events
//! reader. Each gets valid inputs mutated (bit flips, truncations, lengths and counts set to
//! zero, negative or huge values, duplicated chunks) and plain random bytes.
//!
//! Properties: no panic; a call allocates at most a bound linear in its input and the
//! configured limits (never what a length field claims); a successful parse uses no more than
//! it was given and does not change when more bytes follow; encode then decode is the identity.
//!
//! The budget is small by default; `NSQRS_FUZZ_CASES=N` sets the cases of every fuzzer and
//! `NSQRS_FUZZ_SEED=S` replays a run (docs/testing.md).

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use nsqrs::archive::events::{explode, MAX_ROWS_PER_BODY};
use nsqrs::archive::EventRow;
use nsqrs::nsqd::broker::events::{EventMode, EventSink};
use nsqrs::nsqd::broker::files::FileCache;
use nsqrs::nsqd::broker::log::{DiskLog, LogReader};
use nsqrs::nsqd::broker::record::{decode_record, encode_record, max_payload, Decoded, NewRecord};
use nsqrs::nsqd::broker::repairs::Repairs;
use nsqrs::nsqd::options::NsqdOptions;
use nsqrs::protocol::command::{
    parse, ClientState, Command, ConnContext, ParseError, ParseLimits, MAX_LINE_LEN,
};
use nsqrs::protocol::compress::{Decoder, Encoder};
use nsqrs::protocol::events::{Kind, Place};
use nsqrs::protocol::identify::{ClientSettings, IdentifyRequest};
use nsqrs::protocol::lookup::{decode_identify, parse_request, Request};
use nsqrs::protocol::names::{is_valid_channel_name, is_valid_topic_name};
use nsqrs::protocol::MessageId;
use nsqrs_testkit::fuzz::{hostile, peak_bytes, runner, Input};

/// The rows and skipped lines of an events body.
fn explode_pair(body: &[u8]) -> (Vec<EventRow>, usize) {
    let e = explode(body);
    (e.rows, e.skipped)
}

#[global_allocator]
static ALLOC: nsqrs_testkit::fuzz::CountingAlloc = nsqrs_testkit::fuzz::CountingAlloc;

/// What a parser may allocate for `len` input bytes: a fixed allowance plus a constant factor
/// (parameter lists, JSON trees and quoted error texts are a few times their input, never
/// what a length field claims).
fn linear_bound(len: usize, factor: usize) -> usize {
    64 * 1024 + factor * len
}

// ---------------------------------------------------------------------------------------------
// TCP protocol V2 commands

fn small_limits() -> ParseLimits {
    ParseLimits {
        max_msg_size: 1024,
        max_body_size: 8192,
        max_req_timeout_ms: 3_600_000,
        max_rdy_count: 2500,
    }
}

fn default_limits() -> ParseLimits {
    NsqdOptions::default().parse_limits()
}

fn sized(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// The bytes a client sends for `cmd`, in the canonical spelling.
fn encode_command(cmd: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    match cmd {
        Command::Identify(body) => {
            out.extend_from_slice(b"IDENTIFY\n");
            sized(&mut out, body);
        }
        Command::Auth(body) => {
            out.extend_from_slice(b"AUTH\n");
            sized(&mut out, body);
        }
        Command::Sub { topic, channel } => {
            out.extend_from_slice(format!("SUB {topic} {channel}\n").as_bytes())
        }
        Command::Rdy(n) => out.extend_from_slice(format!("RDY {n}\n").as_bytes()),
        Command::Fin(id) => out.extend_from_slice(format!("FIN {id}\n").as_bytes()),
        Command::Req { id, timeout_ms } => {
            out.extend_from_slice(format!("REQ {id} {timeout_ms}\n").as_bytes())
        }
        Command::Touch(id) => out.extend_from_slice(format!("TOUCH {id}\n").as_bytes()),
        Command::Cls => out.extend_from_slice(b"CLS\n"),
        Command::Nop => out.extend_from_slice(b"NOP\n"),
        Command::Pub { topic, body } => {
            out.extend_from_slice(format!("PUB {topic}\n").as_bytes());
            sized(&mut out, body);
        }
        Command::Dpub {
            topic,
            defer_ms,
            body,
        } => {
            out.extend_from_slice(format!("DPUB {topic} {defer_ms}\n").as_bytes());
            sized(&mut out, body);
        }
        Command::Mpub { topic, bodies } => {
            out.extend_from_slice(format!("MPUB {topic}\n").as_bytes());
            let mut inner = (bodies.len() as u32).to_be_bytes().to_vec();
            for b in bodies {
                sized(&mut inner, b);
            }
            sized(&mut out, &inner);
        }
    }
    out
}

/// The state in which a client may send `cmd`.
fn state_for(cmd: &Command) -> ClientState {
    match cmd {
        Command::Rdy(_) | Command::Cls | Command::Fin(_) | Command::Req { .. } | Command::Touch(_) => {
            ClientState::Subscribed
        }
        _ => ClientState::Init,
    }
}

fn topic_name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._-]{1,64}", "[a-z]{1,20}#ephemeral"]
}

fn channel_name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._-]{1,64}", "[a-z]{1,20}#ephemeral"]
}

fn message_body(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..max).prop_map(Bytes::from)
}

/// Commands a well-behaved client sends, within `small_limits`.
fn valid_command() -> impl Strategy<Value = Command> {
    let id = any::<u64>().prop_map(MessageId);
    prop_oneof![
        message_body(200).prop_map(Command::Identify),
        message_body(200).prop_map(Command::Auth),
        (topic_name(), channel_name()).prop_map(|(topic, channel)| Command::Sub { topic, channel }),
        (0i64..=2500).prop_map(Command::Rdy),
        id.clone().prop_map(Command::Fin),
        (id.clone(), 0i64..=3_600_000).prop_map(|(id, timeout_ms)| Command::Req { id, timeout_ms }),
        id.prop_map(Command::Touch),
        Just(Command::Cls),
        Just(Command::Nop),
        (topic_name(), message_body(1024)).prop_map(|(topic, body)| Command::Pub { topic, body }),
        (topic_name(), 0i64..=3_600_000, message_body(1024)).prop_map(|(topic, defer_ms, body)| {
            Command::Dpub {
                topic,
                defer_ms,
                body,
            }
        }),
        (topic_name(), vec(message_body(64), 1..20))
            .prop_map(|(topic, bodies)| Command::Mpub { topic, bodies }),
    ]
}

fn command_seeds() -> Vec<Vec<u8>> {
    let id = MessageId(0x18a3_ea5e_4ea6_9000);
    let cmds = [
        Command::Identify(Bytes::from_static(
            br#"{"client_id":"c","hostname":"h","feature_negotiation":true,"heartbeat_interval":30000,"user_agent":"go-nsq/1.1.0"}"#,
        )),
        Command::Auth(Bytes::from_static(b"secret")),
        Command::Sub { topic: "orders".into(), channel: "billing".into() },
        Command::Rdy(100),
        Command::Fin(id),
        Command::Req { id, timeout_ms: 5000 },
        Command::Touch(id),
        Command::Cls,
        Command::Nop,
        Command::Pub { topic: "orders".into(), body: Bytes::from_static(b"hello world") },
        Command::Dpub { topic: "orders".into(), defer_ms: 1000, body: Bytes::from_static(b"later") },
        Command::Mpub {
            topic: "orders".into(),
            bodies: vec![Bytes::from_static(b"one"), Bytes::from_static(b"two"), Bytes::from_static(b"three")],
        },
    ];
    let mut seeds: Vec<Vec<u8>> = cmds.iter().map(encode_command).collect();
    // A session: several commands back to back.
    seeds.push(seeds.iter().flatten().copied().collect());
    seeds
}

fn any_context() -> impl Strategy<Value = ConnContext> {
    (
        select(vec![
            ClientState::Init,
            ClientState::Subscribed,
            ClientState::Closing,
        ]),
        any::<bool>(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(state, heartbeats_enabled, tls_missing)| ConnContext {
            state,
            heartbeats_enabled,
            tls_missing,
        })
}

#[test]
fn v2_command_parser_survives_hostile_bytes() {
    let strategy = (
        hostile(command_seeds(), 6, 256),
        any_context(),
        any::<bool>(),
        vec(any::<u8>(), 0..32),
    );
    runner("v2 command parser", 2000, true)
        .run(&strategy, |(Input(buf), ctx, small, tail)| {
            let limits = if small { small_limits() } else { default_limits() };
            let (result, peak) = peak_bytes(|| parse(&buf, &limits, ctx));
            prop_assert!(
                peak <= linear_bound(buf.len(), 48),
                "parse of {} bytes held {peak} bytes",
                buf.len()
            );
            let mut longer = buf.clone();
            longer.extend_from_slice(&tail);
            match &result {
                Ok(Some((_, used))) => {
                    prop_assert!(*used > 0 && *used <= buf.len());
                    // The command is complete in what it used; what follows cannot change it.
                    prop_assert_eq!(&parse(&buf[..*used], &limits, ctx), &result);
                    prop_assert_eq!(&parse(&longer, &limits, ctx), &result);
                }
                // An error is decided on bytes already there.
                Err(_) => prop_assert_eq!(&parse(&longer, &limits, ctx), &result),
                Ok(None) => prop_assert!(buf.len() < MAX_LINE_LEN || buf[..MAX_LINE_LEN].contains(&b'\n')),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn v2_commands_round_trip_and_wait_for_their_last_byte() {
    runner("v2 command round trip", 500, true)
        .run(
            &(valid_command(), any::<proptest::sample::Index>()),
            |(cmd, cut)| {
                let bytes = encode_command(&cmd);
                let ctx = ConnContext {
                    state: state_for(&cmd),
                    heartbeats_enabled: true,
                    tls_missing: false,
                };
                let parsed = parse(&bytes, &small_limits(), ctx);
                prop_assert_eq!(parsed, Ok(Some((cmd.clone(), bytes.len()))));
                // Every strict prefix is "not yet": no error, no command, nothing consumed.
                let cut = cut.index(bytes.len());
                prop_assert_eq!(parse(&bytes[..cut], &small_limits(), ctx), Ok(None));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn v2_overlong_line_is_refused_without_waiting() {
    let line = vec![b'A'; MAX_LINE_LEN + 10];
    let ctx = ConnContext {
        state: ClientState::Init,
        heartbeats_enabled: true,
        tls_missing: false,
    };
    assert_eq!(parse(&line, &small_limits(), ctx), Err(ParseError::LineTooLong));
}

// ---------------------------------------------------------------------------------------------
// IDENTIFY (V2)

fn identify_seeds() -> Vec<Vec<u8>> {
    [
        // go-nsq 1.1
        r#"{"client_id":"host","hostname":"host.example","feature_negotiation":true,"heartbeat_interval":30000,"output_buffer_size":16384,"output_buffer_timeout":250,"tls_v1":false,"snappy":false,"deflate":false,"deflate_level":6,"sample_rate":0,"user_agent":"go-nsq/1.1.0","msg_timeout":0}"#,
        // pynsq
        r#"{"short_id":"host","long_id":"host.example","client_id":"host","hostname":"host.example","heartbeat_interval":30000,"feature_negotiation":true,"tls_v1":false,"snappy":true,"deflate":false,"deflate_level":6,"output_buffer_size":16384,"output_buffer_timeout":250,"sample_rate":0,"user_agent":"pynsq/0.9.1"}"#,
        // nsqjs, with nulls and odd casing
        r#"{"client_id":null,"Hostname":"h","feature_negotiation":true,"heartbeat_interval":-1,"output_buffer_size":-1,"output_buffer_timeout":-1,"msg_timeout":60000,"message_id_reply":true,"topology_zone":"z"}"#,
        r#"{}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

#[test]
fn identify_decoder_survives_hostile_json() {
    let opts = NsqdOptions::default();
    runner("identify decoder", 1500, true)
        .run(&hostile(identify_seeds(), 6, 300), |Input(body)| {
            let (decoded, peak) = peak_bytes(|| IdentifyRequest::from_json(&body));
            prop_assert!(
                peak <= linear_bound(body.len(), 128),
                "{} bytes of JSON held {peak}",
                body.len()
            );
            let Ok(req) = decoded else { return Ok(()) };
            // Go accepts an object or null, nothing else.
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            prop_assert!(value.is_object() || value.is_null(), "accepted {value}");
            let mut settings = ClientSettings::defaults(&opts.identify_limits(), "127.0.0.1");
            if settings.apply(&req, &opts.identify_limits()).is_ok() {
                // Whatever a client asks, what is applied stays within the server's limits.
                if let Some(hb) = settings.heartbeat_interval {
                    prop_assert!(hb >= Duration::from_secs(1) && hb <= opts.max_heartbeat_interval);
                }
                prop_assert!(
                    settings.output_buffer_size == 1
                        || (64..=opts.max_output_buffer_size as usize).contains(&settings.output_buffer_size)
                );
                prop_assert!((0..=99).contains(&settings.sample_rate));
                prop_assert!(
                    settings.msg_timeout >= Duration::from_secs(1)
                        && settings.msg_timeout <= opts.max_msg_timeout
                );
            }
            Ok(())
        })
        .unwrap();
}

/// Regression (found while writing the IDENTIFY fuzzer, checked against Go nsqd 1.3.0): serde
/// filled the struct in field order from an array and refused `null`; nsqd answers `OK` to
/// `null` (nothing to apply) and E_BAD_BODY to anything else that is not an object.
#[test]
fn identify_body_that_is_not_an_object_is_decoded_as_go_does() {
    let null = IdentifyRequest::from_json(b"null").expect("null is an empty IDENTIFY in Go");
    assert!(null.client_id.is_empty() && !null.feature_negotiation);
    for bad in [
        &b"[]"[..],
        b"[\"c\",\"s\",\"h\"]",
        b"[true]",
        b"\"x\"",
        b"1",
        b"true",
    ] {
        assert!(
            IdentifyRequest::from_json(bad).is_err(),
            "{} decoded",
            String::from_utf8_lossy(bad)
        );
    }
}

/// Go's `encoding/json` matches keys case-insensitively; so must IDENTIFY.
fn random_case(key: &str, flips: &[bool]) -> String {
    key.chars()
        .zip(flips.iter().cycle())
        .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
        .collect()
}

#[test]
fn identify_fields_round_trip() {
    let fields = (
        "[ -~]{0,30}",
        "[ -~]{0,30}",
        any::<bool>(),
        -1i64..=60_000,
        -1i64..=70_000,
        0i32..=99,
        "[ -~]{0,30}",
        vec(any::<bool>(), 1..8),
    );
    runner("identify round trip", 300, true)
        .run(
            &fields,
            |(client_id, hostname, negotiate, heartbeat, buffer, sample, ua, flips)| {
                let mut obj = serde_json::Map::new();
                let mut put = |k: &str, v: serde_json::Value| obj.insert(random_case(k, &flips), v);
                put("client_id", client_id.clone().into());
                put("hostname", hostname.clone().into());
                put("feature_negotiation", negotiate.into());
                put("heartbeat_interval", heartbeat.into());
                put("output_buffer_size", buffer.into());
                put("sample_rate", sample.into());
                put("user_agent", ua.clone().into());
                let body = serde_json::Value::Object(obj).to_string();
                let req = IdentifyRequest::from_json(body.as_bytes()).unwrap();
                prop_assert_eq!(
                    (
                        req.client_id,
                        req.hostname,
                        req.feature_negotiation,
                        req.heartbeat_interval
                    ),
                    (client_id, hostname, negotiate, heartbeat)
                );
                prop_assert_eq!(
                    (req.output_buffer_size, req.sample_rate, req.user_agent),
                    (buffer, sample, ua)
                );
                Ok(())
            },
        )
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// snappy and deflate streams

#[derive(Debug, Clone, Copy)]
enum Codec {
    Snappy,
    Deflate(u32),
}

impl Codec {
    fn pair(self) -> (Encoder, Decoder) {
        match self {
            Codec::Snappy => (Encoder::snappy(), Decoder::snappy()),
            Codec::Deflate(level) => (Encoder::deflate(level), Decoder::deflate()),
        }
    }
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Snappy), (0u32..=9).prop_map(Codec::Deflate)]
}

/// Payload pieces that compress in different ways: random, repetitive, and empty.
fn payload_pieces() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(
        prop_oneof![
            vec(any::<u8>(), 0..3000),
            (any::<u8>(), 1usize..70_000).prop_map(|(b, n)| vec![b; n]),
            "[a-z ]{0,500}".prop_map(String::into_bytes),
        ],
        1..5,
    )
}

fn compress(codec: Codec, pieces: &[Vec<u8>]) -> Vec<u8> {
    let (mut enc, _) = codec.pair();
    let mut wire = Vec::new();
    for p in pieces {
        enc.encode(p, &mut wire).unwrap();
    }
    wire
}

/// Most bytes one `fill(max)` may add: `max`, overshot by at most one snappy block.
const FILL_OVERSHOOT: usize = 65_536;

/// Feeds `wire` to `dec` in pieces of the given sizes, decoding after each with `fill(max)`
/// until a fill adds nothing, as the connection's read loop does. Returns what came out, or
/// the first error.
fn drain(dec: &mut Decoder, wire: &[u8], piece_sizes: &[usize], max: usize) -> Result<Vec<u8>, String> {
    let mut out = BytesMut::new();
    let mut rest = wire;
    let mut sizes = piece_sizes.iter().cycle();
    let mut rounds = 0;
    loop {
        while dec.has_pending() {
            rounds += 1;
            assert!(rounds < 1_000_000, "the decoder never stops producing");
            let before = out.len();
            let (filled, peak) = peak_bytes(|| dec.fill(&mut out, max));
            filled.map_err(|e| e.to_string())?;
            let made = out.len() - before;
            assert!(made <= max + FILL_OVERSHOOT, "fill({max}) produced {made} bytes");
            // The output buffer may grow (and be copied once); beyond that, a block at most.
            assert!(
                peak <= 4 * (out.len() + max + FILL_OVERSHOOT) + 64 * 1024,
                "fill({max}) held {peak} bytes"
            );
            if made == 0 {
                break;
            }
        }
        if rest.is_empty() {
            return Ok(out.to_vec());
        }
        let n = (*sizes.next().unwrap()).min(rest.len());
        dec.push(&rest[..n]);
        rest = &rest[n..];
    }
}

#[test]
fn compressed_streams_round_trip_in_any_pieces() {
    let strategy = (
        codec(),
        payload_pieces(),
        vec(1usize..5000, 1..6),
        64usize..70_000,
    );
    runner("compression round trip", 120, true)
        .run(&strategy, |(codec, pieces, piece_sizes, max)| {
            let wire = compress(codec, &pieces);
            let (_, mut dec) = codec.pair();
            let out = drain(&mut dec, &wire, &piece_sizes, max).map_err(TestCaseError::fail)?;
            prop_assert!(out == pieces.concat(), "{codec:?}: output differs from input");
            Ok(())
        })
        .unwrap();
}

#[test]
fn decompressors_survive_hostile_streams() {
    let mut seeds = Vec::new();
    for codec in [Codec::Snappy, Codec::Deflate(1), Codec::Deflate(9)] {
        seeds.push((
            codec,
            compress(codec, &[b"PUB t\n\0\0\0\x05hello".to_vec(), vec![b'x'; 100_000]]),
        ));
        seeds.push((
            codec,
            compress(codec, &[(0..=255u8).cycle().take(5000).collect()]),
        ));
    }
    let streams: Vec<Vec<u8>> = seeds.iter().map(|(_, w)| w.clone()).collect();
    let strategy = (
        select(vec![Codec::Snappy, Codec::Deflate(6)]),
        hostile(streams, 6, 2000),
        vec(1usize..3000, 1..4),
        256usize..20_000,
    );
    runner("decompressors", 400, true)
        .run(&strategy, |(codec, Input(wire), piece_sizes, max)| {
            let (_, mut dec) = codec.pair();
            // Errors are expected; panics, runaway output and runaway allocation are not
            // (checked inside `drain`).
            let _ = drain(&mut dec, &wire, &piece_sizes, max);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// lookupd protocol V1

fn lookup_line_seeds() -> Vec<Vec<u8>> {
    [
        "PING\n",
        "IDENTIFY\n",
        "REGISTER orders billing\n",
        "REGISTER orders\n",
        "UNREGISTER orders billing#ephemeral\n",
        "UNREGISTER orders \n",
        "  PING  \r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

#[test]
fn lookupd_request_parser_survives_hostile_lines() {
    runner("lookupd request line", 2000, true)
        .run(
            &(hostile(lookup_line_seeds(), 6, 200), any::<bool>()),
            |(Input(line), identified)| {
                let text = String::from_utf8_lossy(&line);
                let (parsed, peak) = peak_bytes(|| parse_request(&text, identified));
                prop_assert!(peak <= linear_bound(line.len(), 48));
                match parsed {
                    Ok(Request::Register { topic, channel }) | Ok(Request::Unregister { topic, channel }) => {
                        prop_assert!(identified, "REGISTER accepted before IDENTIFY");
                        prop_assert!(is_valid_topic_name(topic));
                        prop_assert!(channel.is_none_or(is_valid_channel_name));
                    }
                    Ok(Request::Identify) => prop_assert!(!identified, "IDENTIFY accepted twice"),
                    Ok(Request::Ping) | Err(_) => {}
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn lookupd_requests_round_trip() {
    let strategy = (topic_name(), proptest::option::of(channel_name()), any::<bool>());
    runner("lookupd request round trip", 300, true)
        .run(&strategy, |(topic, channel, register)| {
            let verb = if register { "REGISTER" } else { "UNREGISTER" };
            let line = match &channel {
                Some(c) => format!("{verb} {topic} {c}\n"),
                None => format!("{verb} {topic}\n"),
            };
            let want = if register {
                Request::Register {
                    topic: &topic,
                    channel: channel.as_deref(),
                }
            } else {
                Request::Unregister {
                    topic: &topic,
                    channel: channel.as_deref(),
                }
            };
            prop_assert_eq!(parse_request(&line, true), Ok(want));
            Ok(())
        })
        .unwrap();
}

#[test]
fn lookupd_identify_body_survives_hostile_json() {
    let seeds = vec![
        br#"{"version":"1.3.0","tcp_port":4150,"http_port":4151,"hostname":"h","broadcast_address":"h","topology_zone":"z","topology_region":"r"}"#.to_vec(),
        br#"{"broadcast_address":"h","TCP_PORT":4150,"http_port":4151,"version":"1.3.0","hostname":null}"#.to_vec(),
        b"null".to_vec(),
    ];
    runner("lookupd identify body", 1500, true)
        .run(&hostile(seeds, 6, 300), |Input(body)| {
            let (peer, peak) = peak_bytes(|| decode_identify(&body));
            prop_assert!(peak <= linear_bound(body.len(), 128));
            if let Ok(p) = peer {
                prop_assert!(
                    p.hostname.len() + p.broadcast_address.len() + p.version.len() <= body.len() * 3
                );
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The topic log: record decoder and segment scan

/// `--max-msg-size` of the logs fuzzed here.
const LOG_MAX_MSG: usize = 4096;

#[derive(Debug, Clone)]
struct Rec {
    id: u64,
    timestamp_ns: i64,
    attempts: u16,
    deliver_at_ns: i64,
    body: Vec<u8>,
}

impl Rec {
    fn new_record(&self) -> NewRecord<'_> {
        NewRecord {
            id: MessageId(self.id),
            timestamp_ns: self.timestamp_ns,
            attempts: self.attempts,
            deliver_at_ns: self.deliver_at_ns,
            body: &self.body,
        }
    }
}

fn record() -> impl Strategy<Value = Rec> {
    (
        any::<u64>(),
        any::<i64>(),
        any::<u16>(),
        any::<i64>(),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(id, timestamp_ns, attempts, deliver_at_ns, body)| Rec {
            id,
            timestamp_ns,
            attempts,
            deliver_at_ns,
            body,
        })
}

fn encoded(rec: &Rec, seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&mut out, seq, &rec.new_record());
    out
}

#[test]
fn log_records_round_trip_and_wait_for_their_last_byte() {
    runner("log record round trip", 500, true)
        .run(
            &(
                record(),
                0u64..1 << 40,
                0u64..1 << 40,
                any::<proptest::sample::Index>(),
            ),
            |(rec, seq, pos, cut)| {
                let bytes = encoded(&rec, seq);
                let Decoded::Record(m) = decode_record(&bytes, pos, max_payload(LOG_MAX_MSG)) else {
                    return Err(TestCaseError::fail("a record just written does not decode"));
                };
                prop_assert_eq!(
                    (
                        m.pos,
                        m.next_pos,
                        m.seq,
                        m.id.0,
                        m.timestamp_ns,
                        m.attempts,
                        m.deliver_at_ns
                    ),
                    (
                        pos,
                        pos + bytes.len() as u64,
                        seq,
                        rec.id,
                        rec.timestamp_ns,
                        rec.attempts,
                        rec.deliver_at_ns
                    )
                );
                prop_assert_eq!(&m.body[..], &rec.body[..]);
                let cut = cut.index(bytes.len());
                match decode_record(&bytes[..cut], pos, max_payload(LOG_MAX_MSG)) {
                    Decoded::Incomplete(need) => prop_assert!(need > cut && need <= bytes.len()),
                    other => return Err(TestCaseError::fail(format!("prefix of {cut} bytes: {other:?}"))),
                }
                Ok(())
            },
        )
        .unwrap();
}

fn log_seeds() -> Vec<Vec<u8>> {
    let rec = |id: u64, body: &[u8], deliver_at_ns: i64| Rec {
        id,
        timestamp_ns: 1_795_324_200_000_000_000,
        attempts: 0,
        deliver_at_ns,
        body: body.to_vec(),
    };
    let mut run = Vec::new();
    for (seq, r) in [rec(1, b"hello", 0), rec(2, &[7; 300], 99), rec(3, b"x", 0)]
        .iter()
        .enumerate()
    {
        run.extend_from_slice(&encoded(r, seq as u64));
    }
    vec![encoded(&rec(0x18a3_ea5e_4ea6_9000, b"hello world", 0), 7), run]
}

#[test]
fn log_record_decoder_survives_hostile_bytes() {
    let max = max_payload(LOG_MAX_MSG);
    runner("log record decoder", 2000, true)
        .run(
            &(hostile(log_seeds(), 6, 400), 0u64..1 << 40),
            |(Input(buf), pos)| {
                let (decoded, peak) = peak_bytes(|| decode_record(&buf, pos, max));
                prop_assert!(
                    peak <= linear_bound(buf.len(), 2),
                    "decoding {} bytes held {peak}",
                    buf.len()
                );
                match decoded {
                    Decoded::Record(m) => {
                        let used = (m.next_pos - pos) as usize;
                        prop_assert!(used <= buf.len());
                        // A record that passes its checksum is exactly what encoding it gives.
                        let again = Rec {
                            id: m.id.0,
                            timestamp_ns: m.timestamp_ns,
                            attempts: m.attempts,
                            deliver_at_ns: m.deliver_at_ns,
                            body: m.body.to_vec(),
                        };
                        prop_assert_eq!(&encoded(&again, m.seq)[..], &buf[..used]);
                    }
                    Decoded::Incomplete(need) => prop_assert!(need > buf.len() && need <= 8 + max),
                    Decoded::Corrupt => {}
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn log_segment_scan_serves_only_what_was_written() {
    let strategy = (vec(record(), 1..12), hostile_file_mutations());
    runner("log segment scan", 150, true)
        .run(&strategy, |(recs, mutations)| {
            let dir = tempfile::tempdir().unwrap();
            let mut written = Vec::new();
            {
                let mut log = open_log(dir.path()).unwrap();
                let batch: Vec<NewRecord> = recs.iter().map(Rec::new_record).collect();
                log.append(&batch).unwrap();
            }
            let seg = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "seg"))
                .unwrap();
            let mut data = std::fs::read(&seg).unwrap();
            for m in &mutations {
                m.apply(&mut data);
            }
            std::fs::write(&seg, &data).unwrap();
            let originals: HashSet<(u64, Vec<u8>)> = recs.iter().map(|r| (r.id, r.body.clone())).collect();

            let log = parking_lot::Mutex::new(open_log(dir.path()).unwrap());
            let (tail, head) = {
                let l = log.lock();
                (l.tail(), l.head())
            };
            prop_assert!(
                head.pos <= data.len() as u64,
                "head {} beyond the file's {} bytes",
                head.pos,
                data.len()
            );
            let mut reader = LogReader::default();
            let mut pos = tail.pos;
            let mut seq = tail.seq;
            let mut last_pos = None;
            for _ in 0..10_000 {
                let limit = log.lock().head();
                if pos >= limit.pos {
                    break;
                }
                let batch = reader.read(&log, pos, seq, limit, 64).unwrap();
                for m in &batch.messages {
                    prop_assert!(
                        originals.contains(&(m.id.0, m.body.to_vec())),
                        "served a message never written"
                    );
                    prop_assert!(last_pos.is_none_or(|p| m.pos > p), "positions go backwards");
                    last_pos = Some(m.pos);
                    written.push(m.id.0);
                }
                if batch.next_pos <= pos {
                    break;
                }
                pos = batch.next_pos;
                seq = batch.next_seq.unwrap_or(seq);
            }
            if mutations.is_empty() {
                prop_assert_eq!(written, recs.iter().map(|r| r.id).collect::<Vec<_>>());
            }
            Ok(())
        })
        .unwrap();
}

/// A log in `dir` with its own descriptor cache and repair list, as a topic opens it.
fn open_log(dir: &std::path::Path) -> std::io::Result<DiskLog> {
    let files = std::sync::Arc::new(FileCache::new(64));
    let repairs = std::sync::Arc::new(Repairs::default());
    DiskLog::open(dir, files, repairs, 1 << 20, LOG_MAX_MSG)
}

fn hostile_file_mutations() -> impl Strategy<Value = Vec<nsqrs_testkit::fuzz::Mutation>> {
    // Reuses the byte mutations through a throwaway strategy of one seed.
    prop_oneof![
        1 => Just(Vec::new()),
        4 => vec(nsqrs_testkit::fuzz::mutation_strategy(), 1..4),
    ]
}

// ---------------------------------------------------------------------------------------------
// Lifecycle events

/// Event bodies as the broker's own sink writes them.
fn sink_bodies(groups: &[(u8, u64, usize)]) -> (Vec<String>, Vec<(String, String)>) {
    let sink = EventSink::new(EventMode::All, None);
    sink.set_nsqd_address("host:4150".into());
    let mut expected = Vec::new();
    for &(kind, first, count) in groups {
        let ids: Vec<MessageId> = (0..count as u64).map(|i| MessageId(first + i)).collect();
        let (kind, name) = match kind % 3 {
            0 => (Kind::Finished, "finished"),
            1 => (Kind::Requeued, "requeued"),
            _ => (Kind::TimedOut, "timed_out"),
        };
        let place = Place {
            topic: "orders",
            channel: Some("billing"),
            client: Some("127.0.0.1:5000"),
        };
        sink.record(kind, &place, &ids);
        expected.extend(ids.iter().map(|id| (id.to_string(), name.to_string())));
    }
    (sink.drain(1 << 20), expected)
}

fn event_groups() -> impl Strategy<Value = Vec<(u8, u64, usize)>> {
    vec(
        (
            any::<u8>(),
            0x18a3_ea5e_4ea6_0000u64..0x18a3_ea5e_4eb0_0000,
            1usize..50,
        ),
        1..6,
    )
}

#[test]
fn events_written_by_the_broker_read_back() {
    runner("events round trip", 300, true)
        .run(&event_groups(), |groups| {
            let (bodies, expected) = sink_bodies(&groups);
            let mut got = Vec::new();
            for body in &bodies {
                let (rows, skipped) = explode_pair(body.as_bytes());
                prop_assert_eq!(skipped, 0);
                got.extend(rows.into_iter().map(|r| (r.id, r.kind)));
            }
            prop_assert_eq!(got, expected);
            Ok(())
        })
        .unwrap();
}

fn event_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = vec![
        br#"{"ev":"published","ts":1795324200000000000,"nsqd":"host:4150","topic":"orders","client":"127.0.0.1:50122","ua":"pynsq/0.9.1","ids":["18a3ea5e4ea69000","18a3ea5e4ea69001"],"sizes":[12,9],"timestamps":[1795324200000000000,1795324200000000000],"deliver_at":0}"#.to_vec(),
        br#"{"ev":"delivered","ts":1795324200000300000,"nsqd":"host:4150","topic":"orders","channel":"billing","client":"127.0.0.1:50130","ids":["18a3ea5e4ea69000"],"attempts":[1]}"#.to_vec(),
        br#"{"ev":"finished","ts":1795324200000900000,"nsqd":"host:4150","topic":"orders","channel":"billing","client":"127.0.0.1:50130","ids":["18a3ea5e4ea69000-18a3ea5e4ea69002","18a3ea5e4ea69010"]}"#.to_vec(),
    ];
    let (bodies, _) = sink_bodies(&[(0, 0x18a3_ea5e_4ea6_9000, 40), (1, 0x18a3_ea5e_4ea6_9100, 3)]);
    seeds.extend(bodies.into_iter().map(String::into_bytes));
    seeds
}

/// Bytes a row holds beyond its struct: its strings.
fn row_bytes(r: &nsqrs::archive::EventRow) -> usize {
    r.id.len()
        + r.topic.len()
        + r.channel.len()
        + r.kind.len()
        + r.nsqd.len()
        + r.client.len()
        + r.detail.len()
}

#[test]
fn events_reader_survives_hostile_bodies() {
    runner("events reader", 1000, true)
        .run(&hostile(event_seeds(), 8, 300), |Input(body)| {
            let ((rows, _), peak) = peak_bytes(|| explode_pair(&body));
            prop_assert!(rows.len() <= MAX_ROWS_PER_BODY);
            let held: usize = rows.iter().map(row_bytes).sum::<usize>()
                + rows.len() * std::mem::size_of::<nsqrs::archive::EventRow>();
            // What explode holds is what it returns (vector growth doubles it), plus a tree of
            // one line at a time.
            prop_assert!(
                peak <= 3 * held + linear_bound(body.len(), 128),
                "{peak} bytes held for {held} returned"
            );
            Ok(())
        })
        .unwrap();
}

/// Regression: a few hundred bytes of `"first-last"` runs stood for up to 2^20 IDs each, so
/// one body could make the archiver build billions of rows.
#[test]
fn events_runs_cannot_amplify_a_body_without_bound() {
    let run = r#""0000000000000000-00000000000fffff""#;
    let line = format!(
        r#"{{"ev":"finished","ts":5,"nsqd":"h","topic":"t","ids":[{}]}}"#,
        vec![run; 64].join(",")
    );
    let ((rows, skipped), peak) = peak_bytes(|| explode_pair(line.as_bytes()));
    assert_eq!((rows.len(), skipped), (0, 1));
    assert!(peak < 1 << 20, "{peak}");
    // Each row copies the group's shared fields: a long shared field times many rows is
    // refused as a whole line, not built.
    let runs: Vec<String> = (0..100u64)
        .map(|i| format!(r#""{:016x}-{:016x}""#, i << 20, (i << 20) + 4095))
        .collect();
    let line = format!(
        r#"{{"ev":"finished","ts":5,"nsqd":"h","topic":"t","client":"{}","ids":[{}]}}"#,
        "c".repeat(600),
        runs.join(",")
    );
    let ((rows, skipped), peak) = peak_bytes(|| explode_pair(line.as_bytes()));
    assert_eq!((rows.len(), skipped), (0, 1));
    assert!(peak < 1 << 20, "{peak}");
}
