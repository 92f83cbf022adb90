//! The byte relay used by tunnels: both directions at once, half-close carried across,
//! bytes counted, and the connection closed after `idle_timeout` without a byte in
//! either direction.
//!
//! On Linux a direction copies its small messages (one read, one write each) and, once
//! a read shows a bulk transfer, moves the rest with splice(2) through a pipe, socket to
//! socket, never entering user space; elsewhere, and for upgraded HTTP connections, a
//! copy loop does the same job.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
#[cfg(target_os = "linux")]
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::outcome::{Failure, Kind, Phase};
#[cfg(target_os = "linux")]
use crate::tunnel::pipe::Pipe;

/// What a finished relay reports for the access log.
#[derive(Debug, Default)]
pub struct RelayOutcome {
    /// Client → server.
    pub bytes_up: u64,
    /// Server → client.
    pub bytes_down: u64,
    /// `idle_timeout`, or the I/O error that ended the relay.
    pub failure: Option<Failure>,
}

/// Time of the last byte moved in either direction, as milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Relay until both directions have ended, one fails, or the connection is idle for
/// `idle_timeout`.
#[cfg(target_os = "linux")]
pub async fn relay(
    mut client: TcpStream,
    mut upstream: TcpStream,
    idle_timeout: Duration,
) -> RelayOutcome {
    let activity = Activity::new();
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let both_ways = async {
        tokio::try_join!(
            one_way(client_read, upstream_write, &up, &activity),
            one_way(upstream_read, client_write, &down, &activity),
        )
    };
    until_done_or_idle(both_ways, &activity, idle_timeout, &up, &down).await
}

/// Where splice(2) is not available, the copy loop does the job.
#[cfg(not(target_os = "linux"))]
pub async fn relay(client: TcpStream, upstream: TcpStream, idle_timeout: Duration) -> RelayOutcome {
    relay_streams(client, upstream, idle_timeout).await
}

async fn idle_watchdog(activity: &Activity, idle_timeout: Duration) {
    loop {
        let deadline = activity.last() + idle_timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Half-close: the reader saw end of stream, so the other side gets our FIN.
#[cfg(target_os = "linux")]
fn shutdown_write(stream: &TcpStream) {
    // The peer may already be gone; then there is nothing left to tell it.
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
}

/// Largest message copied through user space; a read that fills it is a bulk transfer.
#[cfg(target_os = "linux")]
const COPY_LIMIT: usize = 16 * 1024;

#[cfg(target_os = "linux")]
thread_local! {
    /// The copy buffer of the worker thread: a message passes through it within one poll,
    /// so a tunnel holds no buffer of its own while it waits.
    static COPY_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; COPY_LIMIT].into_boxed_slice());
}

/// One direction of a tunnel. Small messages (requests and their answers) are copied:
/// one read and one write each, and a read shorter than the buffer tells tokio the socket
/// is drained, so no read ends in EAGAIN (a splice cannot say that: a pipe may fill by its
/// slots before the socket is empty). The first read that fills the buffer marks a bulk
/// transfer, and the rest of the direction goes by splice, socket to socket.
#[cfg(target_os = "linux")]
async fn one_way(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    counter: &AtomicU64,
    activity: &Activity,
) -> io::Result<()> {
    loop {
        let copied = copy_message(&mut from, &mut to).await?;
        if copied == 0 {
            shutdown_write(to.as_ref());
            return Ok(());
        }
        counter.fetch_add(copied as u64, Ordering::Relaxed);
        activity.touch();
        if copied == COPY_LIMIT {
            return splice_until_end(from.as_ref(), to.as_ref(), counter, activity).await;
        }
    }
}

/// Copy what `from` has (up to [`COPY_LIMIT`]) to `to`; `Ok(0)` is the end of the stream.
#[cfg(target_os = "linux")]
async fn copy_message(from: &mut ReadHalf<'_>, to: &mut WriteHalf<'_>) -> io::Result<usize> {
    let (read, unsent) = loop {
        from.as_ref().readable().await?;
        if let Some(copied) = read_and_write_now(from, to)? {
            break copied;
        }
    };
    if let Some(unsent) = unsent {
        to.write_all(&unsent).await?;
    }
    Ok(read)
}

/// Read what the socket holds into the thread's buffer and write it on at once; `None`
/// when nothing was there after all. What the writer did not take is returned, to be
/// written when it can.
#[cfg(target_os = "linux")]
fn read_and_write_now(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
) -> io::Result<Option<(usize, Option<Vec<u8>>)>> {
    use std::task::{Context, Poll, Waker};
    use tokio::io::ReadBuf;

    COPY_BUFFER.with_borrow_mut(|buffer| {
        let mut read_buf = ReadBuf::new(buffer);
        // poll_read (unlike try_read) clears the readiness after a short read. Pending
        // (readiness was stale) goes back to readable(), which registers the real waker.
        let mut context = Context::from_waker(Waker::noop());
        match std::pin::Pin::new(&mut *from).poll_read(&mut context, &mut read_buf) {
            Poll::Pending => return Ok(None),
            Poll::Ready(result) => result?,
        }
        let message = read_buf.filled();
        if message.is_empty() {
            return Ok(Some((0, None)));
        }
        let written = match to.try_write(message) {
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        let unsent = (written < message.len()).then(|| message[written..].to_vec());
        Ok(Some((message.len(), unsent)))
    })
}

/// The rest of a bulk direction, through a pipe, never entering user space.
#[cfg(target_os = "linux")]
async fn splice_until_end(
    from: &TcpStream,
    to: &TcpStream,
    counter: &AtomicU64,
    activity: &Activity,
) -> io::Result<()> {
    use tokio::io::Interest;

    let mut pipe = Pipe::take()?;
    loop {
        let read = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || pipe.fill(from)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if read == 0 {
            shutdown_write(to);
            pipe.recycle();
            return Ok(());
        }
        while pipe.held() > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || pipe.drain(to)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        counter.fetch_add(read as u64, Ordering::Relaxed);
        activity.touch();
    }
}

/// Relay between two byte streams that are not plain sockets (upgraded HTTP
/// connections, or sockets where splice is not available), with the same half-close,
/// counting and idle rules as [`relay`].
pub async fn relay_streams<A, B>(a: A, b: B, idle_timeout: Duration) -> RelayOutcome
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let both_ways = async {
        tokio::try_join!(
            copy_counted(&mut a_read, &mut b_write, &up, &activity),
            copy_counted(&mut b_read, &mut a_write, &down, &activity),
        )
    };
    until_done_or_idle(both_ways, &activity, idle_timeout, &up, &down).await
}

/// Run both directions until they end, one fails, or nothing moved for `idle_timeout`.
async fn until_done_or_idle(
    both_ways: impl std::future::Future<Output = io::Result<((), ())>>,
    activity: &Activity,
    idle_timeout: Duration,
    up: &AtomicU64,
    down: &AtomicU64,
) -> RelayOutcome {
    let failure = tokio::select! {
        result = both_ways => result
            .err()
            .map(|e| Kind::RelayFailed.at(Phase::Relay).with_detail(e.to_string())),
        () = idle_watchdog(activity, idle_timeout) => Some(Kind::IdleTimeout.at(Phase::Relay)),
    };
    RelayOutcome {
        bytes_up: up.load(Ordering::Relaxed),
        bytes_down: down.load(Ordering::Relaxed),
        failure,
    }
}

async fn copy_counted<R, W>(
    from: &mut R,
    to: &mut W,
    counter: &AtomicU64,
    activity: &Activity,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buf).await?;
        if read == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        to.write_all(&buf[..read]).await?;
        counter.fetch_add(read as u64, Ordering::Relaxed);
        activity.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two connected socket pairs: (client, client-side of proxy), (proxy upstream, server).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// A running relay between a client and a server: (client, server, the relay).
    async fn relayed(
        idle_timeout: Duration,
    ) -> (TcpStream, TcpStream, tokio::task::JoinHandle<RelayOutcome>) {
        let (client, proxy_client_side) = pair().await;
        let (proxy_upstream_side, server) = pair().await;
        let task = tokio::spawn(relay(proxy_client_side, proxy_upstream_side, idle_timeout));
        (client, server, task)
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_with_half_close_and_are_counted() {
        let (mut client, mut server, relay_task) = relayed(Duration::from_secs(10)).await;

        let upload = vec![7u8; 300_000];
        client.write_all(&upload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        assert_eq!(
            received, upload,
            "the upload arrives whole after the client's FIN"
        );

        // The server still answers after the client half-closed.
        server.write_all(b"answer after half-close").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer after half-close");

        let outcome = relay_task.await.unwrap();
        assert_eq!(outcome.bytes_up, 300_000);
        assert_eq!(outcome.bytes_down, 23);
        assert_eq!(outcome.failure, None);
    }

    #[tokio::test]
    async fn a_bulk_transfer_arrives_whole_and_in_order() {
        let (mut client, mut server, relay_task) = relayed(Duration::from_secs(10)).await;
        let download: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        let sent = download.clone();
        let sender = tokio::spawn(async move {
            server.write_all(&sent).await.unwrap();
            server.shutdown().await.unwrap();
            server
        });
        client.shutdown().await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        drop(sender.await.unwrap());
        assert!(received == download, "the download arrives byte for byte");
        let outcome = relay_task.await.unwrap();
        assert_eq!(outcome.bytes_down, download.len() as u64);
    }

    #[tokio::test]
    async fn keep_alive_exchanges_then_a_bulk_answer_then_more_exchanges() {
        let (mut client, mut server, relay_task) = relayed(Duration::from_secs(10)).await;
        let mut expected_down = 0u64;
        // Small request, small answer, many times over (the copied path) ...
        for i in 0..200u32 {
            let request = format!("request {i}\n");
            client.write_all(request.as_bytes()).await.unwrap();
            let mut got = vec![0; request.len()];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, request.as_bytes());
            let answer = format!("answer {i}\n");
            server.write_all(answer.as_bytes()).await.unwrap();
            let mut got = vec![0; answer.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, answer.as_bytes());
            expected_down += answer.len() as u64;
        }
        // ... then a bulk answer larger than the copy buffer, read slowly so that the
        // writer toward the client is refused part of a message ...
        let bulk: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let sent = bulk.clone();
        let sender = tokio::spawn(async move {
            server.write_all(&sent).await.unwrap();
            server
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut received = vec![0; bulk.len()];
        client.read_exact(&mut received).await.unwrap();
        assert!(received == bulk, "the bulk answer arrives byte for byte");
        expected_down += bulk.len() as u64;
        let mut server = sender.await.unwrap();
        // ... and the tunnel still carries small messages both ways, then half-closes.
        client.write_all(b"after bulk").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"after bulk");
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        let outcome = relay_task.await.unwrap();
        assert_eq!(outcome.bytes_down, expected_down + 3);
        assert!(outcome.failure.is_none());
    }

    #[tokio::test]
    async fn bytes_stuck_in_a_relay_cut_short_never_reach_the_next_one() {
        // A server that never reads: the relay's pipe fills and stays full.
        let (mut client, proxy_client_side) = pair().await;
        let (proxy_upstream_side, _stalled_server) = pair().await;
        let stuck = relay(
            proxy_client_side,
            proxy_upstream_side,
            Duration::from_secs(60),
        );
        let writer = tokio::spawn(async move {
            let chunk = vec![b'X'; 64 * 1024];
            for _ in 0..256 {
                if client.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let cut = tokio::time::timeout(Duration::from_millis(500), stuck).await;
        assert!(
            cut.is_err(),
            "the relay was still waiting on the stalled server"
        );
        writer.abort();

        for _ in 0..4 {
            let (mut client, mut server, next) = relayed(Duration::from_secs(10)).await;
            client.write_all(b"only mine").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"only mine");
            drop(server);
            next.await.unwrap();
        }
    }

    #[tokio::test]
    async fn relay_streams_copies_both_ways_and_counts() {
        let (mut client, proxy_client_side) = tokio::io::duplex(1024);
        let (proxy_upstream_side, mut server) = tokio::io::duplex(1024);
        let relay_task = tokio::spawn(relay_streams(
            proxy_client_side,
            proxy_upstream_side,
            Duration::from_secs(10),
        ));
        client.write_all(b"hello upstream").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello upstream");
        server.write_all(b"hi").await.unwrap();
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"hi");
        let outcome = relay_task.await.unwrap();
        assert_eq!((outcome.bytes_up, outcome.bytes_down), (14, 2));
    }

    #[tokio::test]
    async fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
        let (mut client, proxy_client_side) = pair().await;
        let (proxy_upstream_side, _server) = pair().await;
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            relay(
                proxy_client_side,
                proxy_upstream_side,
                Duration::from_millis(200),
            ),
        )
        .await
        .expect("the relay ends by itself");
        assert_eq!(outcome.failure.map(|f| f.kind), Some(Kind::IdleTimeout));
        let mut rest = Vec::new();
        // Dropping the relay closed the client side.
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
