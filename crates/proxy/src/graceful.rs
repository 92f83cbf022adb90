//! Closing idle keep-alive connections at once when sluice stops (SPEC §6): every served
//! HTTP connection, plain or bumped, HTTP/1.1 or HTTP/2, watches the drain signal and is
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
use tokio::sync::watch;

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
    /// request futures inside them.
    pub struct UntilDrained<C> {
        #[pin]
        connection: C,
        // `None` once the shutdown was asked for.
        drain_started: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    }
}

/// Serve `connection` until it ends, gracefully once `draining` turns true.
pub fn until_drained<C: Graceful>(
    connection: C,
    mut draining: watch::Receiver<bool>,
) -> UntilDrained<C> {
    let drain_started = Box::pin(async move {
        // A sender gone means no drain will ever come: wait for the connection alone.
        if draining.wait_for(|&draining| draining).await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    UntilDrained {
        connection,
        drain_started: Some(drain_started),
    }
}

impl<C: Graceful> Future for UntilDrained<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if let Some(drain_started) = this.drain_started.as_mut() {
            if drain_started.as_mut().poll(cx).is_ready() {
                *this.drain_started = None;
                this.connection.as_mut().graceful_shutdown();
            }
        }
        this.connection.poll(cx)
    }
}

/// Asked directly (an idle HTTP/2 connection), it shuts down as on a drain, once.
impl<C: Graceful> Graceful for UntilDrained<C> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.project();
        if this.drain_started.take().is_some() {
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
        let (sender, receiver) = watch::channel(false);
        let (connection, finish, asked) = fake();
        let task = tokio::spawn(until_drained(connection, receiver));
        tokio::task::yield_now().await;
        assert!(!asked.load(Ordering::SeqCst));
        sender.send_replace(true);
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
        let (_sender, receiver) = watch::channel(false);
        let (connection, finish, asked) = fake();
        finish.send(3).unwrap();
        assert_eq!(until_drained(connection, receiver).await, 3);
        assert!(!asked.load(Ordering::SeqCst));
    }
}
