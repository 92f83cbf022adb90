//! What the proxy tells about itself: the access log and its writers (file, syslog), the
//! metrics, and the recorder that keeps the three in step.

pub(crate) mod access_log;
pub(crate) mod metrics;
pub(crate) mod recorder;
pub(crate) mod syslog;
