//! Bounds on connections that stop moving (SPEC §2.6, §9): a body that sends no byte for
//! `idle_timeout` ends its exchange, and a bumped HTTP/2 client connection that carries
//! no stream for `idle_timeout` is closed (GOAWAY). Without them a tarpit server, or a
//! client that stops mid-body, holds a connection slot for ever.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{boxed, BoxError, ProxyBody};
use crate::http::observe::{BodyEnd, BodyWatch, Watched};

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no byte moved for {} s (limits.idle_timeout)", .0.as_secs())]
pub struct Stalled(Duration);

/// `body`, ended with [`Stalled`] when its reader waits `idle` for a frame. Only time
/// spent waiting on this body counts: a reader that is itself slow to ask (the other
/// side's flow control) does not make it stall.
pub fn bounded(body: ProxyBody, idle: Duration) -> ProxyBody {
    boxed(Bounded {
        inner: body,
        idle,
        waiting: None,
    })
}

struct Bounded {
    inner: ProxyBody,
    idle: Duration,
    /// Set while the reader waits for the next frame.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame);
        }
        let idle = this.idle;
        let deadline = this
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.waiting = None;
                Poll::Ready(Some(Err(Box::new(Stalled(idle)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The streams of one HTTP/2 client connection: how many are open and when the last
/// one ended. Shared by the connection's service (one [`StreamGuard`] per request, held
/// by its response body) and the task that closes the connection when idle.
pub struct StreamTracker {
    open: AtomicUsize,
    /// Milliseconds from `start` to when the last stream ended.
    last_end_ms: AtomicU64,
    start: Instant,
}

impl StreamTracker {
    pub fn new() -> Arc<Self> {
        Arc::new(StreamTracker {
            open: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// A stream starts; it ends when the guard is dropped.
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire))
    }

    /// Resolves once no stream has been open for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            if self.open.load(Ordering::Acquire) > 0 {
                // A stream ending restarts the count; look again a full period later.
                tokio::time::sleep(idle).await;
                continue;
            }
            let due = self.idle_since() + idle;
            if due <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One open stream of a [`StreamTracker`].
pub struct StreamGuard(Arc<StreamTracker>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let tracker = &self.0;
        let ms = tracker.start.elapsed().as_millis() as u64;
        tracker.last_end_ms.store(ms, Ordering::Release);
        tracker.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `body`, holding `guard` until it is finished or dropped.
pub fn guarded(body: ProxyBody, guard: StreamGuard) -> ProxyBody {
    boxed(Watched::new(body, guard))
}

/// The stream ends when its body does.
impl BodyWatch for StreamGuard {
    fn ended(self, _: BodyEnd<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// One frame, then nothing, for ever (a server that stalls mid-body).
    struct OneThenSilence(Option<Bytes>);

    impl Body for OneThenSilence {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.take() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_moving_ends_with_an_error() {
        let silent = OneThenSilence(Some(Bytes::from_static(b"a")));
        let mut body = bounded(boxed(silent), Duration::from_millis(50));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        // Nothing more comes: after waiting `idle` the body fails.
        let stalled = body.frame().await.unwrap().unwrap_err();
        assert!(stalled.to_string().contains("no byte moved"), "{stalled}");
    }

    #[tokio::test]
    async fn an_http2_connection_is_idle_once_its_last_stream_ended() {
        let tracker = StreamTracker::new();
        let guard = tracker.open();
        let idle = tracker.idle_for(Duration::from_millis(20));
        tokio::pin!(idle);
        tokio::select! {
            () = &mut idle => panic!("idle while a stream is open"),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        drop(guard);
        tokio::time::timeout(Duration::from_secs(10), idle)
            .await
            .expect("idle once the stream ended");
    }
}
