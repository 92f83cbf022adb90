//! The edge: where connections come in. The listeners and their accept loops, the first
//! bytes of a client connection (PROXY protocol, the request head), the transparent
//! entry point and the admin endpoint. Hands a CONNECT to `connect`, a plain request to
//! `http::plain`.

pub(crate) mod admin;
pub(crate) mod connection;
pub mod proxy_header;
pub(crate) mod server;
pub(crate) mod transparent;
