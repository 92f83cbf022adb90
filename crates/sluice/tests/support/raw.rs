//! A raw TCP client for the wire-level cases curl will not produce.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Read a response head (up to CRLFCRLF), byte by byte so nothing after it is consumed.
    pub fn read_head(&mut self) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// Exactly `n` bytes (a body whose length the head gave).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut body = vec![0u8; n];
        self.stream.read_exact(&mut body).unwrap();
        body
    }

    /// Everything until the peer closes (or the read timeout), and how long that took.
    pub fn read_to_close(&mut self) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        let mut all = Vec::new();
        let _ = self.stream.read_to_end(&mut all);
        (all, started.elapsed())
    }

    /// Send a CONNECT and return the answer's head.
    pub fn connect_to(&mut self, target: &str) -> String {
        self.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes());
        self.read_head()
    }
}
