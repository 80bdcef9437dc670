//! A blocking protocol V2 connection, writing commands and reading frames byte for byte as a
//! client sees them (decoded with the protocol module's own decoder).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use nsqrs::protocol::frame::{self as wire, decode_frame, HEARTBEAT};

/// A frame as tests look at it: decoded by `nsqrs::protocol::frame`, with the ID as text and
/// the data owned, so assertions read plainly.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Response(Vec<u8>),
    Error(String),
    Message {
        timestamp: i64,
        attempts: u16,
        id: String,
        body: Vec<u8>,
    },
}

/// A blocking protocol V2 connection.
pub struct Conn {
    pub s: TcpStream,
}

impl Conn {
    pub fn connect(addr: &str) -> Conn {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"  V2").unwrap();
        Conn { s }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    pub fn cmd(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    pub fn cmd_body(&mut self, line: &str, body: &[u8]) {
        let mut out = format!("{line}\n").into_bytes();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        self.send(&out);
    }

    pub fn identify(&mut self, json: serde_json::Value) -> Frame {
        self.cmd_body("IDENTIFY", json.to_string().as_bytes());
        self.read_frame().unwrap()
    }

    pub fn mpub(&mut self, topic: &str, bodies: &[Vec<u8>]) {
        let mut body = (bodies.len() as u32).to_be_bytes().to_vec();
        for b in bodies {
            body.extend_from_slice(&(b.len() as u32).to_be_bytes());
            body.extend_from_slice(b);
        }
        self.cmd_body(&format!("MPUB {topic}"), &body);
    }

    /// Reads the next frame, skipping heartbeats (answered with NOP). None on EOF.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            // Exactly one frame's bytes are read, so a test may go on reading the socket itself.
            let mut size = [0u8; 4];
            self.s.read_exact(&mut size).ok()?;
            let mut whole = BytesMut::from(&size[..]);
            whole.resize(4 + u32::from_be_bytes(size) as usize, 0);
            self.s.read_exact(&mut whole[4..]).ok()?;
            let frame = decode_frame(&mut whole)
                .unwrap_or_else(|e| panic!("the server sent a bad frame: {e}"))
                .expect("a whole frame");
            return Some(match frame {
                wire::Frame::Response(data) if data == HEARTBEAT => {
                    self.cmd("NOP");
                    continue;
                }
                wire::Frame::Response(data) => Frame::Response(data.to_vec()),
                wire::Frame::Error(data) => Frame::Error(String::from_utf8_lossy(&data).into_owned()),
                wire::Frame::Message(m) => Frame::Message {
                    timestamp: m.timestamp_ns,
                    attempts: m.attempts,
                    id: m.id_str().to_string(),
                    body: m.body.to_vec(),
                },
            });
        }
    }

    pub fn expect_ok(&mut self) {
        assert_eq!(self.read_frame(), Some(Frame::Response(b"OK".to_vec())));
    }

    /// True when the server has closed the connection (EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        self.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
            && self
                .s
                .write_all(b"NOP\n")
                .and_then(|_| self.s.read(&mut b))
                .map(|n| n == 0)
                .unwrap_or(true)
    }

    pub fn subscribe(&mut self, topic: &str, channel: &str, rdy: u32) {
        self.cmd(&format!("SUB {topic} {channel}"));
        self.expect_ok();
        self.cmd(&format!("RDY {rdy}"));
    }

    pub fn close(self) {
        let _ = self.s.shutdown(Shutdown::Both);
    }
}
