//! The HTTP/1.1 connection to the server of a bump, which sheds hyper's state while it
//! is idle.
//!
//! A hyper client connection keeps about 35 KiB for as long as it lives (read and write
//! buffers, a request channel, a task), and a keep-alive connection is idle most of its
//! life. So the hyper connection starts with the first request, runs while requests
//! come, and is taken apart once nothing has moved for [`PARK_AFTER`]: only the TLS
//! stream is kept ("parked") until the next request starts a hyper connection again.
//!
//! A connection is parked only at a clean boundary: every request body sent to its end
//! and every response body read to its end. hyper closes what cannot be reused
//! (`Connection: close`, an abandoned body), and a parked stream that the server closed
//! or wrote to unasked is dropped when it is next needed.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::upstream::UpstreamStream;
use crate::body::{boxed, ProxyBody};
use crate::http::observe::{BodyEnd, BodyWatch, Watched};
use crate::http::upgrade;

/// How long a connection idles before hyper's state is dropped.
const PARK_AFTER: Duration = Duration::from_millis(250);

pub(super) struct H1Link {
    state: State,
}

enum State {
    /// Parked: just the TLS stream.
    Idle(Box<UpstreamStream>),
    /// A hyper connection runs in its own task; the stream comes back through `parked`
    /// when the task parks it (`None` when the connection ended instead).
    Active {
        usage: Arc<Usage>,
        sender: Arc<SenderSlot>,
        parked: oneshot::Receiver<Option<Box<UpstreamStream>>>,
    },
    /// Closed, upgraded or broken: the next request needs a new connection.
    Retired,
}

/// What the link could not do with a request, which it gives back untouched.
pub(super) struct NeedsConnection(pub Request<ProxyBody>);

impl H1Link {
    pub(super) fn new(stream: UpstreamStream) -> Self {
        H1Link {
            state: State::Idle(Box::new(stream)),
        }
    }

    /// Send `request` (in origin form) and return the response; the request comes back
    /// when this connection can carry no more requests.
    pub(super) async fn send(
        &mut self,
        request: Request<ProxyBody>,
    ) -> Result<Result<Response<ProxyBody>, String>, NeedsConnection> {
        if upgrade::is_websocket(&request) {
            return self.send_upgrade(request).await;
        }
        loop {
            match &mut self.state {
                State::Idle(_) => self.activate().await,
                State::Active {
                    usage,
                    sender,
                    parked,
                } => {
                    // Claimed, the sender is this exchange's until it is put back: the
                    // task parks (and drops it) only when no exchange is claimed.
                    let claimed = usage.begin();
                    let taken = claimed.then(|| lock(sender).take()).flatten();
                    if let Some(mut taken) = taken {
                        if taken.ready().await.is_ok() {
                            let response = exchange(&mut taken, usage, request).await;
                            *lock(sender) = Some(taken);
                            return Ok(response);
                        }
                    }
                    if claimed {
                        usage.abandon();
                    }
                    // Parked meanwhile, or closed by the server or by hyper.
                    self.state = match parked.await {
                        Ok(Some(stream)) => State::Idle(stream),
                        _ => State::Retired,
                    };
                }
                State::Retired => return Err(NeedsConnection(request)),
            }
        }
    }

    /// A WebSocket handshake takes the connection for good: only a parked one will do.
    async fn send_upgrade(
        &mut self,
        request: Request<ProxyBody>,
    ) -> Result<Result<Response<ProxyBody>, String>, NeedsConnection> {
        let stream = match std::mem::replace(&mut self.state, State::Retired) {
            State::Idle(stream) => still_open(stream),
            // Busy with other requests: the caller opens a connection of its own.
            active @ State::Active { .. } => {
                self.state = active;
                None
            }
            State::Retired => None,
        };
        let Some(stream) = stream else {
            return Err(NeedsConnection(request));
        };
        let failed = |e: hyper::Error| format!("upstream request failed: {e}");
        let handshake = http1::handshake(TokioIo::new(*stream)).await;
        let (mut sender, connection) = match handshake {
            Ok(handshake) => handshake,
            Err(e) => return Ok(Err(format!("upstream HTTP handshake failed: {e}"))),
        };
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender
            .send_request(request)
            .await
            .map(|response| response.map(boxed))
            .map_err(failed))
    }

    /// Start a hyper connection over the parked stream, if the server has not closed it.
    async fn activate(&mut self) {
        let State::Idle(stream) = std::mem::replace(&mut self.state, State::Retired) else {
            return;
        };
        let Some(stream) = still_open(stream) else {
            return;
        };
        // An HTTP/1.1 client handshake sends nothing and does not wait.
        let Ok((sender, connection)) = http1::handshake(TokioIo::new(*stream)).await else {
            return;
        };
        let usage = Arc::new(Usage::new());
        let sender = Arc::new(Mutex::new(Some(sender)));
        let (back, parked) = oneshot::channel();
        tokio::spawn(drive(connection, usage.clone(), sender.clone(), back));
        self.state = State::Active {
            usage,
            sender,
            parked,
        };
    }
}

/// One exchange on a running connection; the bodies report their end to `usage`.
async fn exchange(
    sender: &mut http1::SendRequest<ProxyBody>,
    usage: &Arc<Usage>,
    request: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, String> {
    let request = request.map(|body| boxed(Completion::new(body, usage.clone())));
    match sender.send_request(request).await {
        Ok(response) => Ok(response.map(|body| boxed(Completion::new(body, usage.clone())))),
        Err(e) => {
            // No response body will end this exchange (the request body ends itself).
            usage.body_ended(false);
            Err(format!("upstream request failed: {e}"))
        }
    }
}

/// Run the hyper connection until it ends, or park it once it has idled for
/// [`PARK_AFTER`] at a clean boundary.
async fn drive(
    mut connection: http1::Connection<TokioIo<UpstreamStream>, ProxyBody>,
    usage: Arc<Usage>,
    sender: Arc<SenderSlot>,
    back: oneshot::Sender<Option<Box<UpstreamStream>>>,
) {
    let park_check = tokio::time::sleep_until(usage.last_activity() + PARK_AFTER);
    tokio::pin!(park_check);
    loop {
        tokio::select! {
            biased;
            ended = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                lock(&sender).take();
                let _ = back.send(None);
                return;
            }
            () = park_check.as_mut() => {
                let now = Instant::now();
                let last_activity = usage.last_activity();
                if last_activity + PARK_AFTER <= now && usage.try_park() {
                    // The sender holds hyper's request channel (8 KiB) alive.
                    lock(&sender).take();
                    let parts = connection.into_parts();
                    let stream = parts
                        .read_buf
                        .is_empty()
                        .then(|| Box::new(parts.io.into_inner()))
                        .and_then(still_open);
                    tracing::debug!(reusable = stream.is_some(), "idle upstream connection parked");
                    let _ = back.send(stream);
                    return;
                }
                park_check.as_mut().reset(next_park_check(now, last_activity));
            }
        }
    }
}

/// When to look again after a look that could not park: [`PARK_AFTER`] past the last
/// activity, or, while an exchange runs (its bodies move data without counting as
/// activity), half a [`PARK_AFTER`] from now. Never now or earlier, or a long download would
/// spin this task on a timer that has already fired.
fn next_park_check(now: Instant, last_activity: Instant) -> Instant {
    (last_activity + PARK_AFTER).max(now + PARK_AFTER / 2)
}

/// hyper's handle for sending requests on a running connection: taken by an exchange
/// while it runs, dropped when the connection is parked or ends.
type SenderSlot = Mutex<Option<http1::SendRequest<ProxyBody>>>;

fn lock(slot: &SenderSlot) -> std::sync::MutexGuard<'_, Option<http1::SendRequest<ProxyBody>>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bodies of a connection's exchange still running, and when anything last moved;
/// shared by the link, the bodies and the task that drives the connection.
struct Usage {
    /// Open bodies (two per exchange), plus the [`PARKED`] and [`DIRTY`] flags.
    state: AtomicU32,
    /// Milliseconds since `start` at the last begin or end of a body.
    last_ms: AtomicU64,
    start: Instant,
}

/// The task parked the connection: it takes no more requests.
const PARKED: u32 = 1 << 31;
/// A body ended early: the connection is not at a clean boundary and is never parked
/// (hyper closes it if it cannot be reused).
const DIRTY: u32 = 1 << 30;

impl Usage {
    fn new() -> Self {
        Usage {
            state: AtomicU32::new(0),
            last_ms: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Claim the connection for one exchange; `false` if it has been parked.
    fn begin(&self) -> bool {
        self.touch();
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & PARKED == 0).then_some(state + 2)
            })
            .is_ok()
    }

    /// An exchange that will not run to its end (both of its bodies).
    fn abandon(&self) {
        self.state.fetch_or(DIRTY, Ordering::AcqRel);
        self.state.fetch_sub(2, Ordering::AcqRel);
    }

    fn body_ended(&self, complete: bool) {
        if !complete {
            self.state.fetch_or(DIRTY, Ordering::AcqRel);
        }
        self.state.fetch_sub(1, Ordering::AcqRel);
        self.touch();
    }

    /// Park if no body is open and none ended early.
    fn try_park(&self) -> bool {
        self.state
            .compare_exchange(0, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Release);
    }

    fn last_activity(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Acquire))
    }
}

/// `None` if the server closed the idle connection (or sent bytes no request asked
/// for): one read attempt that does not wait, and leaves no waker behind.
fn still_open(mut stream: Box<UpstreamStream>) -> Option<Box<UpstreamStream>> {
    let mut probe = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut probe);
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut *stream).poll_read(&mut cx, &mut buf) {
        Poll::Pending => Some(stream),
        Poll::Ready(_) => None,
    }
}

/// A body that reports to the connection's [`Usage`] when it ends, and whether it was
/// read (or sent) to its end.
type Completion<B> = Watched<B, Arc<Usage>>;

impl BodyWatch for Arc<Usage> {
    fn ended(self, end: BodyEnd<'_>) {
        // hyper stops polling a body that says it has ended (and never polls an empty
        // one: HEAD, 204, 304, a GET without a body).
        let complete = matches!(end, BodyEnd::Finished | BodyEnd::Dropped { at_end: true });
        self.body_ended(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    #[test]
    fn the_next_park_check_is_always_ahead() {
        let began = Instant::now();
        // A download that began a minute ago: look again later, not at once.
        let now = began + Duration::from_secs(60);
        assert_eq!(next_park_check(now, began), now + PARK_AFTER / 2);
        // Activity a moment ago: look when the connection has been idle long enough.
        let just_now = now - Duration::from_millis(10);
        assert_eq!(next_park_check(now, just_now), just_now + PARK_AFTER);
    }

    #[test]
    fn a_connection_parks_only_when_every_body_of_its_exchanges_has_ended() {
        let usage = Usage::new();
        assert!(usage.begin());
        assert!(!usage.try_park(), "an exchange is running");
        usage.body_ended(true);
        assert!(!usage.try_park(), "the response is still being read");
        usage.body_ended(true);
        assert!(usage.try_park());
        assert!(!usage.begin(), "a parked connection takes no request");
    }

    #[test]
    fn a_body_that_ends_early_keeps_the_connection_from_being_parked() {
        let usage = Usage::new();
        assert!(usage.begin());
        usage.body_ended(true);
        usage.body_ended(false);
        assert!(!usage.try_park());
        let abandoned = Usage::new();
        assert!(abandoned.begin());
        abandoned.abandon();
        assert!(!abandoned.try_park());
    }

    #[tokio::test]
    async fn bodies_report_their_end_read_or_dropped() {
        let usage = Arc::new(Usage::new());
        assert!(usage.begin());
        let read = Completion::new(Full::new(Bytes::from_static(b"abc")), usage.clone());
        assert_eq!(read.collect().await.unwrap().to_bytes(), "abc");
        // An empty body hyper never polls counts as sent.
        drop(Completion::new(Empty::<Bytes>::new(), usage.clone()));
        assert!(usage.try_park());

        let usage = Arc::new(Usage::new());
        assert!(usage.begin());
        drop(Completion::new(Empty::<Bytes>::new(), usage.clone()));
        drop(Completion::new(
            Full::new(Bytes::from_static(b"unread")),
            usage.clone(),
        ));
        assert!(
            !usage.try_park(),
            "a response dropped unread leaves bytes behind"
        );
    }
}
