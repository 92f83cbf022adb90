//! One HTTP exchange, plain or bumped alike: the request and response hygiene, the
//! inspection of bodies, the upgrade, and the per-request record. Knows nothing of where
//! the upstream connection came from: a bumped link and the plain pool both serve
//! through [`send::Upstream`].

pub(crate) mod exchange;
pub(crate) mod graceful;
pub mod head;
pub(crate) mod hop_by_hop;
pub(crate) mod inspection;
pub(crate) mod message;
pub(crate) mod observe;
pub(crate) mod plain;
pub(crate) mod progress;
pub(crate) mod read_ahead;
pub(crate) mod replies;
pub(crate) mod respond;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod upgrade;
