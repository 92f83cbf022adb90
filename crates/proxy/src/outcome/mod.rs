//! How a connection or a request ends when it does not end well: one [`Failure`] value
//! (who failed, in which phase, what kind), and the one call that turns it into the
//! record's `error`, the metric labels and, where the SPEC says so, the block page.

pub(crate) mod block_page;

mod failure;

pub use self::failure::{Failure, Kind, Phase};
