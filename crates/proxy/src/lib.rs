//! The data path of sluice: listeners (explicit, transparent, admin), the CONNECT flow
//! with its two decision stages, tunnel (splice on Linux), bump (TLS on both sides,
//! HTTP/1.1 and HTTP/2 to either side, WebSocket), plain HTTP forwarding, inspection,
//! block pages and the access-log records.
//!
//! Policy is asked, never interpreted here: every decision comes from
//! [`sluice_policy::Policy`]. Every socket and every timer lives here.

#[macro_use]
mod delegate;

// The layers, from where a connection comes in to what it leaves behind; a layer
// imports only the ones below it (ARCHITECTURE.md, "Layers").
mod bump;
mod connect;
mod edge;
mod http;
mod outcome;
mod telemetry;
mod tunnel;

// What every layer may use: the configuration generation and the services it holds.
mod auth;
mod body;
pub mod bypass;
pub mod cluster;
mod context;
mod dial;
mod slot;

pub use auth::ldap;
pub use edge::proxy_header;
pub use http::head;

pub use cluster::Cluster;
pub use context::{Proxy, ProxyError, Shared};
pub use edge::admin::{serve_admin, Admin, Reload};
pub use edge::server::{serve, CurrentProxy, Listener};
pub use edge::transparent::bind_transparent;
pub use telemetry::access_log::AccessLog;
// The tunnel's two byte paths, for the delivered-throughput benchmark (bench/delivered.sh).
pub use tunnel::relay::{relay, relay_streams, RelayOutcome};
