//! The data path of sluice: listeners, the CONNECT flow with its two decision stages,
//! tunnel (splice on Linux), bump (TLS on both sides, HTTP/1.1 relay), plain HTTP
//! forwarding, block pages and the per-connection access-log record.
//!
//! Policy is asked, never interpreted here: every decision comes from
//! [`sluice_policy::Policy`]. Every socket and every timer lives here.

#[macro_use]
mod delegate;

mod access_log;
mod admin;
mod aia;
mod auth;
mod block_page;
mod bump;
pub mod bypass;
mod client_hello_reader;
mod connect;
mod connection;
mod context;
mod counting;
mod exchange;
mod forward;
mod graceful;
pub mod head;
mod hop_by_hop;
mod inspection;
pub mod ldap;
mod local_addrs;
mod metrics;
mod pipe;
mod plain;
mod progress;
pub mod proxy_header;
mod read_ahead;
mod relay;
mod replies;
mod resolve;
mod server;
mod syslog;
mod transparent;
mod upgrade;
mod upstream;

pub use access_log::AccessLog;
pub use admin::{serve_admin, Admin, Reload};
pub use context::{Proxy, ProxyError, Shared};
pub use server::{serve, CurrentProxy, Listener};
pub use transparent::bind_transparent;
