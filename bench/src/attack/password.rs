//! Wrong passwords: many CONNECTs at once, each worker from a loopback address of its
//! own, half with a wrong password for the user of the run, half for a user that does
//! not exist; each on a new connection, the reply read to its status. The two kinds are
//! reported apart: their answer times side by side show whether an unknown user is
//! answered faster (a user-name oracle).

use std::time::Instant;

use super::cli::FloodArgs;
use super::outcomes::{KindReport, Outcomes};
use super::wire::{label, loopback, within, Wire, STEP_TIMEOUT};
use super::PAUSE;
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::connect;
use crate::loadgen::error::Error;

/// Runs the workers to the end of the run: one report per kind of guess.
pub async fn run(wire: Wire, args: &FloodArgs) -> Vec<KindReport> {
    let known = Outcomes::default();
    let unknown = Outcomes::default();
    let user = wire
        .credentials()
        .and_then(|c| c.split_once(':'))
        .map_or("soak", |(user, _)| user)
        .to_owned();
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..args.password_workers {
        let (guess, outcomes) = if n % 2 == 0 {
            (format!("{user}:wrong-{n}"), known.clone())
        } else {
            (format!("nobody-{n}:wrong-{n}"), unknown.clone())
        };
        workers.spawn(worker(wire.clone(), n, guess, outcomes));
    }
    while workers.join_next().await.is_some() {}
    let note = format!(
        "{} workers at once, each from its own client address",
        args.password_workers
    );
    known.note(&note);
    unknown.note(note);
    vec![
        known.report("wrong password, known user (CONNECTs)", None),
        unknown.report("wrong password, unknown user (CONNECTs)", None),
    ]
}

async fn worker(wire: Wire, n: u32, guess: String, outcomes: Outcomes) {
    let request = connect::request_as(&wire.origin().authority(), Some(&guess));
    let mut buf = ReadBuffer::new();
    while wire.running() {
        let start = Instant::now();
        let outcome = match attempt(&wire, n, &request, &mut buf).await {
            Ok(()) => "200 (accepted)".to_owned(),
            Err(err) => label(&err),
        };
        let refused_at_once = !outcome.starts_with('4');
        outcomes.record(outcome, start.elapsed());
        if refused_at_once {
            tokio::time::sleep(PAUSE.min(wire.left())).await;
        }
    }
}

async fn attempt(wire: &Wire, n: u32, request: &[u8], buf: &mut ReadBuffer) -> Result<(), Error> {
    let mut tcp = wire.tcp(Some(loopback(4, n))).await?;
    buf.clear();
    within(STEP_TIMEOUT, connect::establish(&mut tcp, request, buf)).await?
}
