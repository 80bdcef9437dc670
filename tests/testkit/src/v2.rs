//! A blocking protocol V2 connection, writing commands and reading frames byte for byte as a
//! client sees them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

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
            let mut hdr = [0u8; 8];
            if self.s.read_exact(&mut hdr).is_err() {
                return None;
            }
            let size = u32::from_be_bytes(hdr[0..4].try_into().unwrap()) as usize;
            let kind = i32::from_be_bytes(hdr[4..8].try_into().unwrap());
            let mut data = vec![0u8; size - 4];
            self.s.read_exact(&mut data).ok()?;
            return Some(match kind {
                0 if data == b"_heartbeat_" => {
                    self.cmd("NOP");
                    continue;
                }
                0 => Frame::Response(data),
                1 => Frame::Error(String::from_utf8_lossy(&data).into_owned()),
                _ => Frame::Message {
                    timestamp: i64::from_be_bytes(data[0..8].try_into().unwrap()),
                    attempts: u16::from_be_bytes(data[8..10].try_into().unwrap()),
                    id: String::from_utf8_lossy(&data[10..26]).into_owned(),
                    body: data[26..].to_vec(),
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
