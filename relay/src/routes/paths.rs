//! Route templates other modules name: the metrics count heartbeats and
//! activations by them. Kept apart so the metrics need not import the router.

/// `POST` here is a heartbeat.
pub const HEARTBEAT: &str = "/v1/heartbeat";
/// `POST` here is an activation.
pub const ACTIVATE: &str = "/v1/activate";
