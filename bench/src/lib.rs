//! What the micro-benchmarks share: a deterministic generator, per-lookup timing in
//! batches over several rounds, and a Markdown table of the figures; and the load
//! generator of the proxy benchmark ([`loadgen`], the `loadgen` binary); and the attack
//! generator of the soak under attack ([`attack`], the `attack` binary, `bench/soak.sh`).
//!
//! Figures are per lookup, one sample per batch of [`BATCH`] lookups; the lookups are run
//! in [`ROUNDS`] rounds and the round with the lowest median is reported first: on a
//! shared machine, neighbours only ever make a round slower.

pub mod attack;
pub mod loadgen;

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Lookups per timing sample.
pub const BATCH: usize = 1_000;
/// Timing rounds over the same lookups.
pub const ROUNDS: usize = 3;

/// A small deterministic generator (xorshift64*), so runs are comparable.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }
}

/// The `p` quantile (0.0 to 1.0) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Per-lookup latency, one sample per batch of `BATCH` lookups, sorted.
fn time_round<Q>(queries: &[Q], lookup: &mut impl FnMut(&Q) -> bool) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(queries.len() / BATCH);
    for batch in queries.chunks_exact(BATCH) {
        let start = Instant::now();
        for query in batch {
            black_box(lookup(black_box(query)));
        }
        samples.push(start.elapsed() / BATCH as u32);
    }
    samples.sort_unstable();
    samples
}

/// Latency of each round, sorted samples; the first is the round with the lowest median.
pub fn time_lookups<Q>(queries: &[Q], mut lookup: impl FnMut(&Q) -> bool) -> Vec<Vec<Duration>> {
    let mut rounds: Vec<Vec<Duration>> = (0..ROUNDS)
        .map(|_| time_round(queries, &mut lookup))
        .collect();
    rounds.sort_by_key(|samples| percentile(samples, 0.5));
    rounds
}

/// `"123 ns"`.
pub fn ns(d: Duration) -> String {
    format!("{} ns", d.as_nanos())
}

/// The median, p99 and round-medians rows of one timed lookup.
pub fn latency_rows(what: &str, rounds: &[Vec<Duration>], target: &str) -> Vec<[String; 3]> {
    let medians: Vec<String> = rounds.iter().map(|r| ns(percentile(r, 0.5))).collect();
    vec![
        [
            format!("{what}, median"),
            ns(percentile(&rounds[0], 0.5)),
            target.to_owned(),
        ],
        [
            format!("{what}, p99"),
            ns(percentile(&rounds[0], 0.99)),
            String::new(),
        ],
        [
            format!("{what}, round medians"),
            medians.join(" / "),
            String::new(),
        ],
    ]
}

/// Print a three-column Markdown table, the middle column right-aligned.
pub fn print_table(header: [&str; 3], rows: &[[String; 3]]) {
    let width = |col: usize| {
        rows.iter()
            .map(|row| row[col].chars().count())
            .chain([header[col].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |cells: [&str; 3]| {
        println!(
            "| {:<w0$} | {:>w1$} | {:<w2$} |",
            cells[0],
            cells[1],
            cells[2],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    };
    line(header);
    println!(
        "|{}|{}:|{}|",
        "-".repeat(widths[0] + 2),
        "-".repeat(widths[1] + 1),
        "-".repeat(widths[2] + 2)
    );
    for row in rows {
        line([&row[0], &row[1], &row[2]]);
    }
}
