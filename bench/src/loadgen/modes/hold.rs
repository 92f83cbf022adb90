//! `hold`: opens `--concurrency` connections (each with one `GET` read to its end, then
//! kept alive), at most [`MAX_OPENING`](super::MAX_OPENING) at a time; prints the report
//! as soon as all are open, then keeps them idle until stdin reaches EOF or the duration
//! has passed, so that the caller can measure the proxy's memory meanwhile.

use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::{open_many, Opening};
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::error::Error;
use crate::loadgen::plan::Plan;
use crate::loadgen::session::Session;
use crate::loadgen::stats::emit;

/// Runs the mode (the report comes before the wait); true when a connection was held.
pub async fn run(plan: &'static Plan) -> bool {
    let (sessions, opening) = open_many(plan, plan.concurrency, open_and_get).await;
    emit(&Report {
        mode: "hold",
        open: sessions.len(),
        errors: opening.errors,
    });
    tokio::select! {
        () = stdin_closed() => {}
        () = tokio::time::sleep(plan.duration) => {}
    }
    !sessions.is_empty()
}

/// `{"mode":"hold","open","errors"}`.
#[derive(Serialize)]
struct Report {
    mode: &'static str,
    open: usize,
    errors: u64,
}

fn open_and_get<'a>(plan: &'static Plan, buf: &'a mut ReadBuffer) -> Opening<'a, Session> {
    Box::pin(async move {
        let mut session = Session::open(plan, buf).await?;
        if !session.get(buf).await?.keep_alive {
            return Err(Error::Http1("the server closes after the response".into()));
        }
        Ok(session)
    })
}

/// Resolves when stdin reaches EOF (or fails); what is read is ignored.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut scratch = [0u8; 256];
    while let Ok(n) = stdin.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
}
