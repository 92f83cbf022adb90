//! Closing idle keep-alive connections at once when sluice stops (SPEC §6): every served
//! HTTP connection, plain or bumped, HTTP/1.1 or HTTP/2, watches the drain token and is
//! then asked to finish gracefully. hyper closes an HTTP/1.1 connection that waits for
//! its next request at once (one in flight is answered first) and sends an HTTP/2 GOAWAY,
//! letting open streams finish. Tunnels and upgraded relays are not HTTP any more and
//! simply get the drain's time.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A served connection that can be asked to finish what is in flight and then close.
pub trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

pin_project_lite::pin_project! {
    /// Drives a connection to its end; once the drain starts, asks it to shut down
    /// gracefully and keeps driving it until it has finished what is in flight.
    ///
    /// A named future rather than an `async fn`: the compiler cannot prove an async
    /// function generic over hyper's connection types `Send` for every lifetime of the
    /// request futures inside them. The drain signal is a named future too, so a
    /// connection allocates nothing for it.
    pub struct UntilDrained<C> {
        #[pin]
        connection: C,
        #[pin]
        drain_started: WaitForCancellationFutureOwned,
        // The shutdown was asked for (by the drain or directly): not again.
        asked: bool,
    }
}

/// Serve `connection` until it ends, gracefully once `draining` is cancelled.
pub fn until_drained<C: Graceful>(connection: C, draining: CancellationToken) -> UntilDrained<C> {
    UntilDrained {
        connection,
        drain_started: draining.cancelled_owned(),
        asked: false,
    }
}

impl<C: Graceful> Future for UntilDrained<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.asked && this.drain_started.poll(cx).is_ready() {
            *this.asked = true;
            this.connection.as_mut().graceful_shutdown();
        }
        this.connection.poll(cx)
    }
}

/// Asked directly (an idle HTTP/2 connection), it shuts down as on a drain, once.
impl<C: Graceful> Graceful for UntilDrained<C> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.project();
        if !*this.asked {
            *this.asked = true;
            this.connection.graceful_shutdown();
        }
    }
}

impl<I, B, S> Graceful for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, B, S, E> Graceful for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    E: Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A connection that finishes when told, and notes being asked to shut down.
    struct Fake {
        finished: tokio::sync::oneshot::Receiver<u8>,
        asked: Arc<AtomicBool>,
    }

    impl Future for Fake {
        type Output = u8;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
            Pin::new(&mut self.finished)
                .poll(cx)
                .map(|r| r.unwrap_or(0))
        }
    }

    impl Graceful for Fake {
        fn graceful_shutdown(self: Pin<&mut Self>) {
            self.asked.store(true, Ordering::SeqCst);
        }
    }

    fn fake() -> (Fake, tokio::sync::oneshot::Sender<u8>, Arc<AtomicBool>) {
        let (finish, finished) = tokio::sync::oneshot::channel();
        let asked = Arc::new(AtomicBool::new(false));
        let fake = Fake {
            finished,
            asked: asked.clone(),
        };
        (fake, finish, asked)
    }

    #[tokio::test]
    async fn the_shutdown_is_asked_for_once_the_drain_starts() {
        let draining = CancellationToken::new();
        let (connection, finish, asked) = fake();
        let task = tokio::spawn(until_drained(connection, draining.clone()));
        tokio::task::yield_now().await;
        assert!(!asked.load(Ordering::SeqCst));
        draining.cancel();
        for _ in 0..100 {
            if asked.load(Ordering::SeqCst) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(asked.load(Ordering::SeqCst));
        // What is in flight still finishes after the shutdown was asked for.
        finish.send(7).unwrap();
        assert_eq!(task.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_connection_that_ends_first_is_never_asked() {
        let (connection, finish, asked) = fake();
        finish.send(3).unwrap();
        assert_eq!(until_drained(connection, CancellationToken::new()).await, 3);
        assert!(!asked.load(Ordering::SeqCst));
    }
}
