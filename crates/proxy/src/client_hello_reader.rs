//! Reading the client's ClientHello off the socket without forwarding it (SPEC §1 step
//! 3). The bytes are held so that they can be sent to the server unchanged (tunnel) or
//! replayed into our own TLS server (bump).

use std::time::Duration;

use bytes::BufMut;

use sluice_tls::client_hello::{ClientHello, Peek, Peeker, MAX_CLIENT_HELLO_BYTES};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub enum HelloRead {
    /// A complete ClientHello; `held` are all bytes read so far (possibly more than the
    /// hello itself).
    Hello { hello: ClientHello, held: Vec<u8> },
    /// Not TLS, or nothing at all within the timeout (a server-speaks-first protocol).
    NotTls { held: Vec<u8> },
    /// Terminate: the reason for the access log's `error` field.
    Failed(&'static str),
}

pub async fn read_client_hello(
    client: &mut TcpStream,
    mut held: Vec<u8>,
    timeout: Duration,
) -> HelloRead {
    let deadline = Instant::now() + timeout;
    // Resumes where it stopped, so a hello trickled in tiny reads costs linear time.
    let mut peeker = Peeker::default();
    loop {
        match peeker.peek(&held) {
            Peek::Complete { hello, .. } => return HelloRead::Hello { hello, held },
            Peek::NotTls => return HelloRead::NotTls { held },
            Peek::Malformed(_) => return HelloRead::Failed("client_hello_malformed"),
            Peek::TooLarge => return HelloRead::Failed("client_hello_too_large"),
            Peek::Incomplete => {}
        }
        let room = MAX_CLIENT_HELLO_BYTES.saturating_sub(held.len());
        if room == 0 {
            return HelloRead::Failed("client_hello_too_large");
        }
        held.reserve(room.min(16 * 1024));
        let read =
            tokio::time::timeout_at(deadline, client.read_buf(&mut (&mut held).limit(room))).await;
        match read {
            Err(_) if held.is_empty() => return HelloRead::NotTls { held },
            Err(_) => return HelloRead::Failed("client_hello_timeout"),
            Ok(Ok(0)) => return HelloRead::Failed("client_closed"),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return HelloRead::Failed("client_reset"),
        }
    }
}
