//! The engine: holds the inputs in force (last-known-good), the local state,
//! and the current [`Verdict`]; recomputes it on every change. It is owned by
//! one thread (see [`crate::actor`]), so writes are serialized without locks
//! and every acknowledged write is committed before its reply is built.
//!
//! It decides nothing itself (`kaching_core::evaluate` and the policy
//! functions do) and chooses no HTTP status (the API does, from the typed
//! [`Outcome`]s of its writes). Files: [`files`] (reading passes under the
//! last-known-good rules), [`revocations`] (the one path a revocation list
//! takes into force), [`writes`] (leases, usage, upgrade requests),
//! [`relay`] (the engine's half of connected mode), [`published`] (what
//! readers and event streams get).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;

use kaching_core::time::{period_key, rfc3339, Timestamp};
use kaching_core::wire::verifier::{Rejection, VerifierStatus};
use kaching_core::wire::LicenseStatus;
use kaching_core::{
    evaluate, LicenseInput, Settings, Snapshot, TierCatalog, VerifiedLicense,
    VerifiedRevocationList,
};

use crate::config::Config;
use crate::identity::{Identity, KEY_FILE};
use crate::loader;
use crate::state::{Db, DB_FILE};
use crate::trust::Trust;
use kaching_core::root::VerifiedRoot;

pub mod files;
pub mod leases;
mod mailbox;
pub mod preview;
pub mod published;
pub mod relay;
mod revocations;
pub mod writes;

pub use published::{Event, Published};
pub use writes::Outcome;

/// The error code of a write refused because the state database was
/// deleted or replaced under the running daemon.
pub const STATE_DATABASE_LOST: &str = "state_database_lost";

/// How long status warns that the license in force is a downgrade.
const DOWNGRADE_WARNING: Timestamp = 7 * 86_400;

/// The engine's whole world. See the module docs.
pub struct Engine {
    /// The configuration it was opened with: file paths, lease TTL,
    /// idempotency TTL, the `[relay]` section.
    pub(crate) cfg: Config,
    /// What `evaluate` needs from the configuration and the identity
    /// (audience, this cluster's id, tolerances), built once.
    pub(crate) settings: Settings,
    /// The tier catalog: upgrade suggestions and the upgrade-request tier check.
    pub(crate) catalog: TierCatalog,
    /// The state database; the only place anything acknowledged is kept.
    pub(crate) db: Db,
    /// The cluster key and id.
    pub identity: Identity,
    /// The root pinned in the build (or by an embedding program), verified
    /// at open; `None`: development trust from the trusted-keys file.
    pub(crate) pinned: Option<VerifiedRoot>,
    /// Issuer and revoker keys in force (last-known-good), and the root
    /// chain they come from; `None` until trust is established.
    pub(crate) trust: Option<Trust>,
    /// License in force (last-known-good).
    pub(crate) license: Option<VerifiedLicense>,
    /// Why there is no license in force, when a file was there but refused.
    pub(crate) license_problem: Option<String>,
    /// Revocation list in force; the database holds the same list and its
    /// high-water version, which is what survives a deleted file.
    pub(crate) revocations: Option<VerifiedRevocationList>,
    /// Refused files by kind (`license`, `revocations`, `trusted_keys`),
    /// shown in status until that file loads cleanly.
    pub(crate) rejections: BTreeMap<&'static str, Rejection>,
    /// Node id → lease expiry: the live-node count without a query.
    pub(crate) leases: leases::Leases,
    /// (quota, period bucket) → used: quota checks without a query; every
    /// change is committed to `db` before it lands here.
    pub(crate) counters: HashMap<(String, String), u64>,
    /// Trusted-time mark: the latest time seen (clock, relay); never lowered
    /// but by a clock reset the vendor signed ([`crate::clock_reset`]).
    mark: Timestamp,
    /// The mark as last written to `db` (written every `MARK_PERSIST_STEP`).
    persisted_mark: Timestamp,
    /// Stamps of the files the last applied read saw (the reader's baseline).
    pub(crate) fingerprint: Vec<loader::FileStamp>,
    /// Files whose rejection says a read is stuck (cleared by the next pass).
    pub(crate) stalled: BTreeSet<&'static str>,
    /// Reader passes numbered below this began before the engine wrote a
    /// watched file (the relay's revocation mirror) and are ignored.
    pub(crate) files_stale_before: u64,
    /// Set when the engine wrote a watched file: the actor asks for a fresh read.
    pub(crate) files_written: bool,
    /// Set by a write whose effect on the verdict (usage, nodes in use) is
    /// not yet in `current`: [`Engine::settle`] recomputes once for a whole
    /// group of writes, before any of them is answered.
    stale: bool,
    /// The verdict and JSON readers get; swapped whole by `recompute`.
    current: Arc<Published>,
    /// `GET /v1/license` as last rendered, with the license bytes and root
    /// version it was rendered for (see `license_json`).
    license_answer: Option<(Option<Vec<u8>>, Option<u64>, Bytes)>,
    /// Events raised by the last command, drained by the actor to streams.
    pub(crate) events: Vec<Event>,
    /// When the newest acknowledged usage report was written (receipts are
    /// imported by `kaching-verifier receipt import`, another process: read
    /// again every tick while the license in force has a duty to report).
    pub(crate) last_ack: Option<Timestamp>,
    /// What changed when the license in force last replaced another, and when.
    pub(crate) license_change: Option<(kaching_core::policy::LicenseChange, Timestamp)>,
    /// A license file kept out because it cannot be used yet (or any more)
    /// while the one in force can: looked at again every tick, and the
    /// files re-read once the clock changes that (see `files.rs`).
    pub(crate) deferred: Option<VerifiedLicense>,
    /// A downgrade held by `hold_downgrades`, and what it would change.
    pub(crate) pending: Option<(VerifiedLicense, kaching_core::policy::LicenseChange)>,
    /// When the expired idempotency keys were last looked for.
    last_prune: Timestamp,
    /// Expired idempotency keys are known to remain (a batch came back
    /// full): [`Engine::prune`] goes on at the next tick or idle moment.
    prune_pending: bool,
    /// Connected mode: what the relay worker reported (see [`relay`]).
    pub(crate) relay: relay::RelayState,
    /// Set by a tick that found the state database's path no longer naming
    /// the file the daemon has open (deleted or replaced): the message every
    /// write is refused with and status warns with (see [`Engine::check_db_file`]).
    pub(crate) db_lost: Option<String>,
}

/// The root pinned by the embedding program or built in, verified; checked
/// before anything is created in the state folder.
fn pinned_root(cfg: &Config) -> anyhow::Result<Option<VerifiedRoot>> {
    let bytes: Option<Vec<u8>> = match &cfg.pinned_root {
        Some(b) => Some(b.to_vec()),
        None => crate::trust::built_in_root().map(<[u8]>::to_vec),
    };
    bytes.map(|b| crate::trust::verify_pinned(&b)).transpose()
}

/// Expired idempotency keys are looked for this often (seconds).
const PRUNE_EVERY: u64 = 60;
/// Keys deleted per pruning transaction.
pub const PRUNE_BATCH: usize = 1000;
/// Pruning batches per tick (more run while the engine is idle).
pub const PRUNE_STEPS_PER_TICK: usize = 4;

/// What one call of [`Engine::prune`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Idempotency keys forgotten.
    pub keys: usize,
    /// Expired keys remain (the last batch was full).
    pub more: bool,
}

/// The trusted-time mark is written when it moved this far, and at shutdown.
const MARK_PERSIST_STEP: u64 = 60;

/// How long [`Engine::open`] waits for the first read of the watched files.
/// Special files never make it wait (they are refused at once); only a file
/// system that hangs does, and then the engine starts without the files
/// (every check denied, saying why) and takes them when the read returns.
pub const OPEN_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Engine {
    /// Opens the state folder (creating identity and database on a first
    /// start when `create` is true), loads the files (waiting at most
    /// [`OPEN_READ_WAIT`] for them) and computes a verdict.
    pub fn open(cfg: Config, create: bool) -> anyhow::Result<Engine> {
        let dir = &cfg.state_dir;
        let key_exists = dir.join(KEY_FILE).exists();
        let db_exists = dir.join(DB_FILE).exists();
        if create && !key_exists && !db_exists {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create state folder {}: create it or fix its permissions",
                    dir.display()
                )
            })?;
        }
        if key_exists && !db_exists {
            // Refuse rather than silently reset quota counters.
            Db::open(dir, false)?;
        }
        if !key_exists && db_exists {
            anyhow::bail!(
                "state folder {} holds a database but no {KEY_FILE}: restore the cluster key from a backup \
                 (licenses bound to this cluster need it)",
                dir.display()
            );
        }
        let pinned = pinned_root(&cfg)?;
        let identity = Identity::load_or_create(dir, create)?;
        let db = Db::open(dir, create)?;
        // For `check`: the id derived here, and which key it came from.
        db.record_cluster_id(&identity.record())?;
        let now = cfg.clock.now();
        if db.time("created_at")?.is_none() {
            db.set_time("created_at", now)?;
        }
        let watched = cfg.watched();
        let mut e = Engine::assemble(cfg, db, identity, pinned)?;
        match crate::reader::read_within(&watched, OPEN_READ_WAIT) {
            Some(set) => e.apply_files(set, now),
            None => {
                let why = format!(
                    "the license files ({}, {}, {}) could not be read within {}s (a hung network file system?): \
                     every check is denied until they are read",
                    watched.license.display(),
                    watched.trusted_keys.display(),
                    watched.revocations.display(),
                    OPEN_READ_WAIT.as_secs()
                );
                tracing::warn!("{why}");
                e.license_problem = Some(why);
                e.recompute(now);
            }
        }
        e.persist_mark(true)?;
        e.events.clear();
        Ok(e)
    }

    /// The engine `kaching-verifier check` asks: the verdict a start of the
    /// daemon would reach now, by the same path as [`Engine::open`], but
    /// from a state database opened read-only, with the files read on this
    /// thread (no helper thread, no time limit) and nothing written, so no
    /// fsync. When a start would first have to set the state folder up
    /// (no cluster key or database yet, an older database to migrate), it
    /// is [`Engine::open`] with `create`, as before.
    pub fn open_read_only(cfg: Config) -> anyhow::Result<Engine> {
        let dir = &cfg.state_dir;
        if !dir.join(KEY_FILE).exists() {
            return Engine::open(cfg, true);
        }
        let Some(db) = Db::open_read_only(dir)? else {
            return Engine::open(cfg, true);
        };
        let pinned = pinned_root(&cfg)?;
        // The id a start recorded, when the key file still holds that key
        // (else derived from the key, as a start does).
        let identity = Identity::load_recorded(dir, db.recorded_cluster_id()?.as_ref())?;
        let now = cfg.clock.now();
        let watched = cfg.watched();
        let mut e = Engine::assemble(cfg, db, identity, pinned)?;
        let stamps = watched.fingerprint(&mut |_| {});
        e.apply_files(loader::read_files(&watched, 0, stamps, &mut |_| {}), now);
        e.events.clear();
        Ok(e)
    }

    /// The engine over an open state database, before any file is read:
    /// tier catalog, settings, and what the database holds.
    fn assemble(
        cfg: Config,
        db: Db,
        identity: Identity,
        pinned: Option<VerifiedRoot>,
    ) -> anyhow::Result<Engine> {
        let catalog = match &cfg.tiers {
            None => TierCatalog::builtin(),
            Some(p) => {
                let text = match loader::read_regular(p, 1 << 20, "the tier catalog (TOML)") {
                    loader::Loaded::Good(b) => String::from_utf8(b).map_err(|_| {
                        anyhow::anyhow!("tier catalog {} is not UTF-8 text", p.display())
                    })?,
                    loader::Loaded::Missing => {
                        anyhow::bail!("cannot read tier catalog {}: no such file", p.display())
                    }
                    loader::Loaded::Rejected(why) => anyhow::bail!("tier catalog: {why}"),
                };
                TierCatalog::from_toml(&text)
                    .map_err(|e| anyhow::anyhow!("tier catalog {}: {e}", p.display()))?
            }
        };
        let secs = |d: std::time::Duration| d.as_secs();
        let settings = Settings {
            audience: cfg.audience.clone(),
            cluster_id: Some(identity.cluster_id.clone()),
            clock_tolerance: secs(cfg.clock_tolerance),
            expiring_window: secs(cfg.expiring_window),
            nbf_skew: secs(cfg.nbf_skew),
        };
        let mark = db.trusted_time()?;
        let leases = leases::Leases::from_map(db.leases()?);
        let counters = db.counters()?;
        let placeholder = Published::placeholder();
        let relay = relay::RelayState::load(&cfg.relay, &db)?;
        let mut e = Engine {
            cfg,
            settings,
            catalog,
            db,
            identity,
            pinned,
            trust: None,
            license: None,
            license_problem: None,
            revocations: None,
            rejections: BTreeMap::new(),
            leases,
            counters,
            mark,
            persisted_mark: mark,
            fingerprint: Vec::new(),
            stalled: BTreeSet::new(),
            files_stale_before: 0,
            files_written: false,
            deferred: None,
            stale: false,
            current: Arc::new(placeholder),
            license_answer: None,
            events: Vec::new(),
            license_change: None,
            pending: None,
            last_ack: None,
            last_prune: 0,
            prune_pending: false,
            relay,
            db_lost: None,
        };
        e.refresh_last_ack();
        Ok(e)
    }

    /// What the API serves now.
    pub fn current(&self) -> Arc<Published> {
        Arc::clone(&self.current)
    }

    /// Pinned (a root built in or handed in) or development trust.
    pub fn trust_mode(&self) -> crate::trust::Mode {
        if self.pinned.is_some() {
            crate::trust::Mode::Pinned
        } else {
            crate::trust::Mode::Development
        }
    }

    /// The license in force, if any.
    pub fn license(&self) -> Option<&VerifiedLicense> {
        self.license.as_ref()
    }

    /// The usage bucket a metric is counted in at time `t`.
    pub(crate) fn bucket(&self, metric: &str, now: Timestamp) -> Option<String> {
        let q = self.license.as_ref()?.license.quotas.get(metric)?;
        Some(period_key(q.period, now.max(self.mark)))
    }

    /// Reads when the newest acknowledged report was written.
    pub(crate) fn refresh_last_ack(&mut self) {
        match self.db.last_acknowledged_report() {
            Ok(t) => self.last_ack = t,
            Err(e) => tracing::warn!(%e, "cannot read the acknowledged reports"),
        }
    }

    /// What this cluster knows at `now`, as the policy reads it.
    fn snapshot(&self, now: Timestamp) -> Snapshot {
        let mut usage = BTreeMap::new();
        if let Some(l) = &self.license {
            for name in l.license.quotas.keys() {
                if let Some(b) = self.bucket(name, now) {
                    let used = self.counters.get(&(name.clone(), b)).copied().unwrap_or(0);
                    usage.insert(name.clone(), used);
                }
            }
        }
        Snapshot {
            trusted_time: self.mark,
            live_nodes: self.live_nodes(now),
            quota_usage: usage,
            last_relay_contact: self.relay.last_contact,
            last_acknowledged_report: self.last_ack,
        }
    }

    fn license_input(&self) -> LicenseInput<'_> {
        match (&self.license, &self.license_problem) {
            (Some(v), _) => LicenseInput::Verified(&v.license),
            (None, Some(p)) => LicenseInput::Rejected(p),
            (None, None) => LicenseInput::Missing,
        }
    }

    /// How the verdict is reached with the clock at `now`, rule by rule
    /// (`kaching-verifier explain`): the same inputs as the verdict in force.
    pub fn explain(&self, now: Timestamp) -> kaching_core::policy::Explanation {
        kaching_core::policy::explain(
            self.license_input(),
            self.revocations.as_ref().map(|r| &r.list),
            &self.snapshot(now),
            &self.catalog,
            &self.settings,
            now,
        )
    }

    pub(crate) fn live_nodes(&self, now: Timestamp) -> u64 {
        self.leases.live(now)
    }

    /// Recomputes the verdict and publishes it; queues a `status` event when
    /// anything a client acts on changed.
    pub fn recompute(&mut self, now: Timestamp) {
        self.stale = false;
        let snapshot = self.snapshot(now);
        let verdict = evaluate(
            self.license_input(),
            self.revocations.as_ref().map(|r| &r.list),
            &snapshot,
            &self.catalog,
            &self.settings,
            now,
        );
        self.mark = self.mark.max(verdict.trusted_time);
        let mut status = LicenseStatus::of(&verdict, &self.catalog);
        let rejections: Vec<Rejection> = self.rejections.values().cloned().collect();
        for r in &rejections {
            status.warnings.push(format!(
                "{} file refused at {}: {}{}",
                r.file,
                r.at,
                r.reason,
                match r.file.as_str() {
                    // A pinned build never took trust from that file.
                    "trusted_keys" if self.pinned.is_some() => {
                        " (the root built into this verifier stays in force)"
                    }
                    "license" if self.license.is_some() => " (the last good one stays in force)",
                    "trusted_keys" | "roots" if self.trust.is_some() => {
                        " (the last good one stays in force)"
                    }
                    "license" | "trusted_keys" | "roots" => "",
                    _ if self.revocations.is_some() => " (the last good one stays in force)",
                    _ => "",
                }
            ));
        }
        if let Some(lost) = &self.db_lost {
            status.warnings.push(lost.clone());
        }
        if let Some((_, c)) = &self.pending {
            status.warnings.push(format!(
                "license {} takes something away ({}): it waits for `kaching-verifier accept-downgrade`; license {} stays in force",
                c.to_license,
                c.summary(),
                c.from_license
            ));
        }
        if let Some((c, at)) = self.license_change.as_ref().filter(|(c, _)| c.downgrade) {
            if now < at.saturating_add(DOWNGRADE_WARNING) {
                status.warnings.push(format!(
                    "the license in force replaced {} on {} and takes something away: {}",
                    c.from_license,
                    rfc3339(*at),
                    c.summary()
                ));
            }
        }
        let body = VerifierStatus {
            status,
            cluster_id: self.identity.cluster_id.clone(),
            evaluated_at: rfc3339(now),
            rejections,
            trusted_time: rfc3339(self.mark),
            trust: self.trust_mode().as_str().into(),
            root_version: self.trust.as_ref().and_then(Trust::root_version),
            relay: self.relay.status(),
            license_change: self.license_change.as_ref().map(|(c, _)| c.clone()),
            pending_downgrade: self.pending.as_ref().map(|(_, c)| c.clone()),
        };
        let changed = published::event_key(&body) != published::event_key(&self.current.status);
        crate::metrics::record_verdict(&verdict);
        crate::metrics::record_relay(
            self.relay.last_contact,
            self.license
                .as_ref()
                .and_then(|l| l.license.heartbeat)
                .map(|h| h.offline_grace),
            now,
        );
        let license_json = self.license_json();
        let relay_signers = self.relay_signers();
        let mut next = Published::new(verdict, body, license_json, relay_signers);
        next.freshness = published::Freshness {
            revocation_version: self.revocations.as_ref().map(|r| r.list.version),
            revocation_expires: self.revocations.as_ref().map(|r| r.list.expires),
            last_relay_contact: self.relay.last_contact,
            offline_grace: self
                .license
                .as_ref()
                .and_then(|l| l.license.heartbeat)
                .map(|h| h.offline_grace),
        };
        if changed {
            self.events.push(Event {
                kind: "status",
                data: String::from_utf8_lossy(&next.status_json).into_owned(),
            });
        }
        self.current = Arc::new(next);
    }

    /// Brings the published verdict up to date with the writes applied since
    /// the last recompute (usage counted, nodes taken or given back). The
    /// actor calls it after every command, and after a group of writes once,
    /// before their answers go out: a client that got its answer reads the
    /// state that includes its write. A write's own decision never reads
    /// what this recomputes (limits come from the license, usage and live
    /// nodes from the engine's maps), so deferring it changes no answer.
    pub fn settle(&mut self, now: Timestamp) {
        if self.stale {
            self.recompute(now);
        }
    }

    /// `GET /v1/license`, re-rendered only when the license bytes or the
    /// root in force changed (recompute runs after every group of writes).
    fn license_json(&mut self) -> Bytes {
        let license = self.license.as_ref().map(|l| l.bytes.as_slice());
        let root_version = self.trust.as_ref().and_then(Trust::root_version);
        if let Some((bytes, version, json)) = &self.license_answer {
            if bytes.as_deref() == license && *version == root_version {
                return json.clone();
            }
        }
        let root = self
            .trust
            .as_ref()
            .and_then(|t| t.chain.as_ref())
            .map(|c| c.current().bytes.as_slice());
        let json = published::license_json(self.license.as_ref(), self.trust_mode().as_str(), root);
        self.license_answer = Some((license.map(<[u8]>::to_vec), root_version, json.clone()));
        json
    }

    /// The trusted-time mark in force (what usage reports carry).
    pub fn trusted_time(&self) -> Timestamp {
        self.mark
    }

    /// Raises the trusted-time mark to `t` (relay-signed time); never lowers it.
    pub(crate) fn raise_mark(&mut self, t: Timestamp) {
        self.mark = self.mark.max(t);
    }

    /// The mark after the state database took a clock reset
    /// ([`crate::clock_reset`]), which set it to `to`: the one way the mark
    /// goes down, and only there.
    pub(crate) fn mark_lowered_to(&mut self, to: Timestamp) {
        self.mark = to;
        self.persisted_mark = to;
    }

    /// Writes the trusted-time mark when it moved enough (or `force`).
    pub fn persist_mark(&mut self, force: bool) -> anyhow::Result<()> {
        if self.mark > self.persisted_mark
            && (force || self.mark >= self.persisted_mark + MARK_PERSIST_STEP)
        {
            self.db.raise_trusted_time(self.mark)?;
            self.persisted_mark = self.mark;
        }
        Ok(())
    }

    /// Periodic work: dead leases, old idempotency keys, time-driven state
    /// changes (expiry, grace, overdue, clock checks), the trusted-time mark.
    /// No file is read here (the actor asks the reader thread for that), so a
    /// stuck read never delays it.
    pub fn tick(&mut self, now: Timestamp) {
        self.check_db_file();
        if self.leases.any_expired(now) {
            self.leases.cull(now);
            if let Err(e) = self.db.cull_leases(now) {
                tracing::warn!(%e, "cannot remove expired leases from the state database");
            }
        }
        if now >= self.last_prune + PRUNE_EVERY {
            self.last_prune = now;
            self.prune_pending = true;
        }
        self.prune(now, PRUNE_STEPS_PER_TICK);
        self.take_accepted_downgrade(now);
        self.recheck_deferred(now);
        // Only a license with a duty to report reads the receipts.
        if self
            .license
            .as_ref()
            .is_some_and(|l| l.license.report.is_some())
        {
            self.refresh_last_ack();
        }
        self.recompute(now);
        if let Err(e) = self.persist_mark(false) {
            tracing::warn!(%e, "cannot persist the trusted-time mark");
        }
    }

    /// Whether the state database's path still names the file the engine
    /// has open (one `stat` per tick, none per write). Deleted or replaced,
    /// every write would be acknowledged into a file no start will open
    /// again, and lost: from here writes are refused ([`Engine::refused_write`]),
    /// status warns, and the error is logged once. Reads go on from memory.
    /// Should the very file come back to the path, writes resume.
    pub(crate) fn check_db_file(&mut self) {
        use crate::state::DbFile;
        let how = match self.db.file_status() {
            DbFile::InPlace => {
                if self.db_lost.take().is_some() {
                    tracing::info!(
                        path = %self.db.path().display(),
                        "the state database is back in place: writes are accepted again"
                    );
                }
                return;
            }
            DbFile::Deleted => "was deleted",
            DbFile::Replaced => "was replaced by another file",
        };
        if self.db_lost.is_some() {
            return;
        }
        let message = format!(
            "the state database {} {how} while the daemon ran: restore it and restart kaching-verifier              (systemctl restart kaching-verifier). Until then usage, node leases and upgrade requests are              refused, since they would be written to a file no start opens again; checks keep answering              from memory",
            self.db.path().display()
        );
        tracing::error!("{message}");
        self.db_lost = Some(message);
    }

    /// The answer to every write while the state database is lost (see
    /// [`Engine::check_db_file`]); `None` while writes are accepted. Reads
    /// a field only: nothing is added to the write path.
    pub fn refused_write(&self) -> Option<Outcome> {
        self.db_lost.as_ref().map(|m| {
            Outcome::StateDatabaseLost(kaching_core::wire::ErrorBody::new(
                STATE_DATABASE_LOST,
                format!("{m}. Nothing was recorded: retry once the daemon has been restarted"),
            ))
        })
    }

    /// Forgets expired idempotency keys (older than `idempotency_ttl`), at
    /// most `steps` batches of [`PRUNE_BATCH`], each its own short
    /// transaction: a backlog of millions of keys (a week of heavy metering)
    /// never holds the writes queued behind it for more than one batch. The
    /// actor calls it with one step whenever it has nothing else to do, and
    /// `tick` with a few, until a batch comes back short.
    pub fn prune(&mut self, now: Timestamp, steps: usize) -> Pruned {
        let mut pruned = Pruned::default();
        if !self.prune_pending {
            return pruned;
        }
        let before = now.saturating_sub(self.cfg.idempotency_ttl.as_secs());
        for _ in 0..steps {
            match self.db.prune_idempotency(before, PRUNE_BATCH) {
                Ok(n) => {
                    pruned.keys += n;
                    if n < PRUNE_BATCH {
                        self.prune_pending = false;
                        break;
                    }
                }
                Err(e) => {
                    // Tried again at the next look (PRUNE_EVERY).
                    tracing::warn!(%e, "cannot prune idempotency keys");
                    self.prune_pending = false;
                    break;
                }
            }
        }
        pruned.more = self.prune_pending;
        pruned
    }

    /// True while expired idempotency keys are known to remain.
    pub fn prune_pending(&self) -> bool {
        self.prune_pending
    }

    /// Clean shutdown: mark written, WAL folded back.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.persist_mark(true)?;
        self.db.checkpoint()
    }
}
