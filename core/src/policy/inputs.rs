//! What the policy is given besides the license: the deployment's settings,
//! what the verifier remembers between evaluations, and how the license
//! could be loaded.

use std::collections::BTreeMap;

use crate::license::License;
use crate::time::{Timestamp, DAY};

/// Deployment-side settings that are not part of the license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The product this verifier guards; licenses for another audience are invalid.
    pub audience: String,
    /// This cluster's id; a license bound to another cluster is invalid.
    pub cluster_id: Option<String>,
    /// How far the wall clock may sit below the trusted-time mark (default 24 h).
    pub clock_tolerance: u64,
    /// How long before `exp` the state becomes `expiring` (default 30 days).
    pub expiring_window: u64,
    /// Clock skew allowed against `nbf` (default 5 minutes).
    pub nbf_skew: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            audience: "bzzz".into(),
            cluster_id: None,
            clock_tolerance: DAY,
            expiring_window: 30 * DAY,
            nbf_skew: 300,
        }
    }
}

/// What the verifier remembers between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// High-water mark of trusted time (persisted; only grows).
    pub trusted_time: Timestamp,
    /// Nodes currently holding a live lease.
    pub live_nodes: u64,
    /// Usage per metric in the current period bucket (gauges: the last level).
    pub quota_usage: BTreeMap<String, u64>,
    /// Last successful relay contact, for connected licenses.
    pub last_relay_contact: Option<Timestamp>,
    /// When the newest usage report the vendor acknowledged (a receipt
    /// imported) was written: the clock of a license's duty to report.
    pub last_acknowledged_report: Option<Timestamp>,
}

/// The license as the caller could load it.
#[derive(Debug, Clone, Copy)]
pub enum LicenseInput<'a> {
    /// No license file was found.
    Missing,
    /// A license file was found but failed verification; the text says why.
    Rejected(&'a str),
    /// A license whose signature verified.
    Verified(&'a License),
}
