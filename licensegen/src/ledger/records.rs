//! Rows of the ledger and the queries that read and write them. Functions
//! take a `&Connection` so callers can run them inside their transaction.

use anyhow::{Context, Result};
use kaching_core::report_chain::{Finding, Link};
use kaching_core::time::Timestamp;
use kaching_core::LicenseId;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

/// One issued license.
#[derive(Debug, Clone, Serialize)]
pub struct LicenseRecord {
    /// License id.
    pub id: LicenseId,
    /// Customer display name.
    pub customer: String,
    /// Customer id (`sub`).
    pub customer_id: String,
    /// Tier.
    pub tier: String,
    /// Node limit.
    pub max_nodes: u32,
    /// `iat`.
    pub issued_at: Timestamp,
    /// `exp`.
    pub expires_at: Timestamp,
    /// Grace seconds after `exp`.
    pub grace: u64,
    /// Bound cluster id.
    pub cluster: Option<String>,
    /// License this one replaced.
    pub supersedes: Option<LicenseId>,
    /// License that replaced this one.
    pub superseded_by: Option<LicenseId>,
    /// Kid of the signing key.
    pub kid: String,
    /// SHA-256 of the license file as written.
    pub file_sha256: String,
    /// The file as written (binary or armored).
    #[serde(skip)]
    pub file: Vec<u8>,
    /// Where it was written.
    pub path: String,
}

/// One entry of a license's history.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When.
    pub time: Timestamp,
    /// What: issued, superseded, suspended, reinstated, revoked, usage.
    pub action: String,
    /// Details for people.
    pub detail: String,
}

/// One signed revocation list.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationRecord {
    /// Its version.
    pub version: u64,
    /// `iat`.
    pub issued_at: Timestamp,
    /// `expires`.
    pub expires: Timestamp,
    /// Number of entries.
    pub entries: u64,
    /// The binary COSE bytes.
    #[serde(skip)]
    pub file: Vec<u8>,
}

/// One imported usage report.
#[derive(Debug, Clone, Serialize)]
pub struct UsageRecord {
    /// License reported on.
    pub license_id: String,
    /// Reporting cluster.
    pub cluster_id: String,
    /// Period start.
    pub period_start: Timestamp,
    /// Period end.
    pub period_end: Timestamp,
    /// Peak nodes.
    pub peak_nodes: u32,
    /// metric → bucket → value, as JSON.
    pub counters: serde_json::Value,
    /// Upgrade requests queued offline, as JSON.
    pub upgrade_requests: serde_json::Value,
    /// SHA-256 of the report file.
    pub file_sha256: String,
    /// When it was imported.
    pub imported_at: Timestamp,
    /// Its place in the cluster's report chain; `None` for an unchained
    /// report from an older verifier.
    pub chain: Option<ChainRecord>,
}

/// A chained report's place in its cluster's chain, and what its import flagged.
#[derive(Debug, Clone, Serialize)]
pub struct ChainRecord {
    /// Sequence number.
    pub seq: u64,
    /// The verifier's trusted-time mark when it wrote the report.
    pub trusted_time: Timestamp,
    /// Newest report whose receipt the cluster had imported.
    pub acked: u64,
    /// Gap, fork, counter or trusted time going down, found at import.
    pub findings: Vec<Finding>,
}

/// One clock reset signed (`licensegen clock-reset`).
#[derive(Debug, Clone, Serialize)]
pub struct ClockResetRecord {
    /// The reset's id (`cti`), as a UUID.
    pub id: String,
    /// The cluster whose mark it may lower.
    pub cluster_id: String,
    /// The cluster's mark it was made for (the highest it replaces).
    pub mark: Timestamp,
    /// `iat`: this computer's clock when it was signed; the cluster's new mark.
    pub issued: Timestamp,
    /// `exp`: the cluster takes it until then.
    pub expires: Timestamp,
    /// Kid of the signing key.
    pub kid: String,
    /// Where it was written.
    pub path: String,
    /// When it was recorded.
    pub created: Timestamp,
    /// The file as written (armored).
    #[serde(skip)]
    pub file: Vec<u8>,
}

impl ClockResetRecord {
    /// The signed claims, for core's rules (`clock_reset::explains`);
    /// `None` for a row whose id does not read back.
    pub fn reset(&self) -> Option<kaching_core::clock_reset::ClockReset> {
        let id: LicenseId = self.id.parse().ok()?;
        Some(kaching_core::clock_reset::ClockReset {
            id: id.0,
            cluster_id: self.cluster_id.clone(),
            mark: self.mark,
            issued: self.issued,
            expires: self.expires,
        })
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn id_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<LicenseId>> {
    let s: Option<String> = row.get(idx)?;
    Ok(s.and_then(|s| s.parse().ok()))
}

const LICENSE_COLS: &str = "id, customer, customer_id, tier, max_nodes, issued_at, expires_at, grace, cluster, supersedes, superseded_by, kid, file_sha256, file, path";

fn license_row(row: &Row<'_>) -> rusqlite::Result<LicenseRecord> {
    let id: String = row.get(0)?;
    Ok(LicenseRecord {
        id: id.parse().unwrap_or(LicenseId([0; 16])),
        customer: row.get(1)?,
        customer_id: row.get(2)?,
        tier: row.get(3)?,
        max_nodes: row.get(4)?,
        issued_at: u(row.get(5)?),
        expires_at: u(row.get(6)?),
        grace: u(row.get(7)?),
        cluster: row.get(8)?,
        supersedes: id_col(row, 9)?,
        superseded_by: id_col(row, 10)?,
        kid: row.get(11)?,
        file_sha256: row.get(12)?,
        file: row.get(13)?,
        path: row.get(14)?,
    })
}

/// Records an issued license and its first history event.
pub fn insert_license(
    conn: &Connection,
    rec: &LicenseRecord,
    now: Timestamp,
    detail: &str,
) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO licenses ({LICENSE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            rec.id.to_string(),
            rec.customer,
            rec.customer_id,
            rec.tier,
            rec.max_nodes,
            i(rec.issued_at),
            i(rec.expires_at),
            i(rec.grace),
            rec.cluster,
            rec.supersedes.map(|s| s.to_string()),
            rec.superseded_by.map(|s| s.to_string()),
            rec.kid,
            rec.file_sha256,
            rec.file,
            rec.path,
        ],
    )
    .context("cannot record the license in the ledger")?;
    add_event(conn, &rec.id, now, "issued", detail)
}

/// Another license replaced `old` first (two upgrades or renewals raced).
#[derive(Debug)]
pub struct AlreadyReplaced {
    /// The license both tried to replace.
    pub old: LicenseId,
    /// The license that replaced it.
    pub by: String,
}

impl std::fmt::Display for AlreadyReplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "license {} was already replaced by {}: upgrade or renew that one instead",
            self.old, self.by
        )
    }
}

impl std::error::Error for AlreadyReplaced {}

/// Marks `old` as replaced by `new`, unless another license replaced it
/// first ([`AlreadyReplaced`]): run inside the transaction recording `new`,
/// so of two racing replacements exactly one wins.
pub fn mark_superseded(
    conn: &Connection,
    old: &LicenseId,
    new: &LicenseId,
    now: Timestamp,
) -> Result<()> {
    let changed = conn.execute(
        "UPDATE licenses SET superseded_by = ?1 WHERE id = ?2 AND superseded_by IS NULL",
        params![new.to_string(), old.to_string()],
    )?;
    if changed == 0 {
        let by: Option<String> = conn
            .query_row(
                "SELECT superseded_by FROM licenses WHERE id = ?1",
                [old.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        return Err(anyhow::Error::new(AlreadyReplaced {
            old: *old,
            by: by.unwrap_or_else(|| "another license".into()),
        }));
    }
    add_event(conn, old, now, "superseded", &format!("replaced by {new}"))
}

/// Appends a history event.
pub fn add_event(
    conn: &Connection,
    id: &LicenseId,
    now: Timestamp,
    action: &str,
    detail: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO events (license_id, time, action, detail) VALUES (?1, ?2, ?3, ?4)",
        params![id.to_string(), i(now), action, detail],
    )
    .context("cannot record the event in the ledger")?;
    Ok(())
}

/// Shortest id prefix [`find_license`] accepts.
const MIN_PREFIX: usize = 4;

/// Finds a license by full id or by a unique prefix of at least 4 hex digits.
pub fn find_license(conn: &Connection, text: &str) -> Result<LicenseRecord> {
    let not_found = || {
        crate::error::usage(format!(
            "license {text} is not in the ledger: check the id with `licensegen ledger list`"
        ))
    };
    let wanted = text.trim().to_ascii_lowercase();
    if let Ok(id) = wanted.parse::<LicenseId>() {
        return conn
            .query_row(
                &format!("SELECT {LICENSE_COLS} FROM licenses WHERE id = ?1"),
                [id.to_string()],
                license_row,
            )
            .optional()?
            .ok_or_else(not_found);
    }
    if !wanted.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(not_found());
    }
    if wanted.chars().filter(char::is_ascii_hexdigit).count() < MIN_PREFIX {
        return Err(crate::error::usage(format!(
            "id prefix '{}' is too short: give at least {MIN_PREFIX} characters of the license id (see `licensegen ledger list`)",
            text.trim()
        )));
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {LICENSE_COLS} FROM licenses WHERE id LIKE ?1 || '%' ORDER BY id LIMIT 3"
    ))?;
    let found: Vec<LicenseRecord> = stmt
        .query_map([&wanted], license_row)?
        .collect::<rusqlite::Result<_>>()?;
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.into_iter().next().ok_or_else(not_found)?),
        _ => Err(crate::error::usage(format!(
            "license id prefix {text} matches several licenses: give more of the id"
        ))),
    }
}

/// Every license, oldest first; those issued in the same second in the
/// order they were recorded (the rowid), not by their random ids.
pub fn list_licenses(conn: &Connection) -> Result<Vec<LicenseRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LICENSE_COLS} FROM licenses ORDER BY issued_at, rowid"
    ))?;
    let rows = stmt
        .query_map([], license_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// A license's history, oldest first.
pub fn events(conn: &Connection, id: &LicenseId) -> Result<Vec<Event>> {
    let mut stmt =
        conn.prepare("SELECT time, action, detail FROM events WHERE license_id = ?1 ORDER BY seq")?;
    let rows = stmt
        .query_map([id.to_string()], |r| {
            Ok(Event {
                time: u(r.get(0)?),
                action: r.get(1)?,
                detail: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// The newest revocation list recorded.
pub fn latest_revocation(conn: &Connection) -> Result<Option<RevocationRecord>> {
    Ok(conn
        .query_row(
            "SELECT version, issued_at, expires, entries, file FROM revocation_lists ORDER BY version DESC LIMIT 1",
            [],
            |r| {
                Ok(RevocationRecord {
                    version: u(r.get(0)?),
                    issued_at: u(r.get(1)?),
                    expires: u(r.get(2)?),
                    entries: u(r.get(3)?),
                    file: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Records a signed revocation list.
pub fn insert_revocation(conn: &Connection, rec: &RevocationRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO revocation_lists (version, issued_at, expires, entries, file_sha256, file) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            i(rec.version),
            i(rec.issued_at),
            i(rec.expires),
            i(rec.entries),
            super::sha256_hex(&rec.file),
            rec.file
        ],
    )
    .context("cannot record the revocation list in the ledger")?;
    Ok(())
}

/// Records a usage report; false when the same file was imported before.
pub fn insert_usage(conn: &Connection, rec: &UsageRecord, file: &[u8]) -> Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO usage_reports (license_id, cluster_id, period_start, period_end, peak_nodes, counters, upgrade_requests, file_sha256, file, imported_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            rec.license_id,
            rec.cluster_id,
            i(rec.period_start),
            i(rec.period_end),
            rec.peak_nodes,
            rec.counters.to_string(),
            rec.upgrade_requests.to_string(),
            rec.file_sha256,
            file,
            i(rec.imported_at)
        ],
    )
    .context("cannot record the usage report in the ledger")?;
    Ok(n == 1)
}

/// Usage reports of a license, oldest period first.
pub fn usage_for(conn: &Connection, id: &LicenseId) -> Result<Vec<UsageRecord>> {
    let mut stmt = conn.prepare(
        "SELECT u.license_id, u.cluster_id, u.period_start, u.period_end, u.peak_nodes, u.counters, u.upgrade_requests, u.file_sha256, u.imported_at, c.seq, c.trusted_time, c.acked, c.findings
         FROM usage_reports u LEFT JOIN report_chain c ON c.file_sha256 = u.file_sha256
         WHERE u.license_id = ?1 ORDER BY u.period_end, u.seq",
    )?;
    let rows = stmt
        .query_map([id.to_string()], |r| {
            let counters: String = r.get(5)?;
            let requests: String = r.get(6)?;
            Ok(UsageRecord {
                license_id: r.get(0)?,
                cluster_id: r.get(1)?,
                period_start: u(r.get(2)?),
                period_end: u(r.get(3)?),
                peak_nodes: r.get(4)?,
                counters: serde_json::from_str(&counters).unwrap_or_default(),
                upgrade_requests: serde_json::from_str(&requests).unwrap_or_default(),
                file_sha256: r.get(7)?,
                imported_at: u(r.get(8)?),
                chain: match r.get::<_, Option<i64>>(9)? {
                    None => None,
                    Some(seq) => Some(ChainRecord {
                        seq: u(seq),
                        trusted_time: u(r.get(10)?),
                        acked: u(r.get(11)?),
                        findings: serde_json::from_str(&r.get::<_, String>(12)?)
                            .unwrap_or_default(),
                    }),
                },
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Records a chained report's place in the chain and what its import found.
pub fn insert_chain(
    conn: &Connection,
    file_sha256: &str,
    cluster_id: &str,
    link: &Link,
    chain: &ChainRecord,
) -> Result<()> {
    conn.execute(
        "INSERT INTO report_chain (file_sha256, cluster_id, seq, hash, prev, trusted_time, acked, findings) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            file_sha256,
            cluster_id,
            i(link.seq),
            link.hash.as_slice(),
            link.prev.as_ref().map(|p| p.as_slice()),
            i(chain.trusted_time),
            i(chain.acked),
            serde_json::to_string(&chain.findings)?,
        ],
    )
    .context("cannot record the report chain in the ledger")?;
    Ok(())
}

/// The chain links of every chained report imported from `cluster_id`, and
/// the findings recorded for the report `file_sha256` if it is one of them.
pub fn chain_links(
    conn: &Connection,
    cluster_id: &str,
    file_sha256: &str,
) -> Result<(Vec<Link>, Option<Vec<Finding>>)> {
    let mut stmt = conn.prepare(
        "SELECT c.seq, c.hash, c.prev, c.trusted_time, u.counters, c.file_sha256, c.findings
         FROM report_chain c JOIN usage_reports u ON u.file_sha256 = c.file_sha256
         WHERE c.cluster_id = ?1",
    )?;
    let mut links = Vec::new();
    let mut mine = None;
    let rows = stmt.query_map([cluster_id], |r| {
        Ok((
            u(r.get(0)?),
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Option<Vec<u8>>>(2)?,
            u(r.get(3)?),
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    for row in rows {
        let (seq, hash, prev, trusted_time, counters, sha, findings) = row?;
        if sha == file_sha256 {
            mine = Some(serde_json::from_str(&findings).unwrap_or_default());
        }
        let (Ok(hash), Ok(prev)) = (
            <[u8; 32]>::try_from(hash),
            prev.map(<[u8; 32]>::try_from).transpose(),
        ) else {
            continue;
        };
        links.push(Link {
            seq,
            hash,
            prev,
            trusted_time,
            counters: serde_json::from_str(&counters).unwrap_or_default(),
        });
    }
    Ok((links, mine))
}

/// Ids of the upgrade requests carried by reports imported from
/// `cluster_id` before, other than the report `file_sha256`.
pub fn reported_upgrade_ids(
    conn: &Connection,
    cluster_id: &str,
    file_sha256: &str,
) -> Result<std::collections::BTreeSet<u64>> {
    let mut stmt = conn.prepare(
        "SELECT upgrade_requests FROM usage_reports WHERE cluster_id = ?1 AND file_sha256 != ?2",
    )?;
    let mut ids = std::collections::BTreeSet::new();
    for json in stmt.query_map([cluster_id, file_sha256], |r| r.get::<_, String>(0))? {
        let v: serde_json::Value = serde_json::from_str(&json?).unwrap_or_default();
        for r in v.as_array().into_iter().flatten() {
            if let Some(id) = r.get("id").and_then(serde_json::Value::as_u64) {
                ids.insert(id);
            }
        }
    }
    Ok(ids)
}

/// The receipt written for the report `report_sha256`, if any.
pub fn receipt_for(conn: &Connection, report_sha256: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT file FROM receipts WHERE report_sha256 = ?1",
            [report_sha256],
            |r| r.get(0),
        )
        .optional()?)
}

/// Records the receipt written for a report.
pub fn insert_receipt(
    conn: &Connection,
    report_sha256: &str,
    receipt: &kaching_core::receipt::Receipt,
    file: &[u8],
) -> Result<()> {
    conn.execute(
        "INSERT INTO receipts (report_sha256, cluster_id, report_seq, issued_at, file) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            report_sha256,
            receipt.cluster_id,
            i(receipt.report_seq),
            i(receipt.issued),
            file
        ],
    )
    .context("cannot record the receipt in the ledger")?;
    Ok(())
}

/// The files of the usage reports imported for a license, oldest period first.
pub fn usage_files(conn: &Connection, id: &LicenseId) -> Result<Vec<Vec<u8>>> {
    let mut stmt = conn
        .prepare("SELECT file FROM usage_reports WHERE license_id = ?1 ORDER BY period_end, seq")?;
    let rows = stmt
        .query_map([id.to_string()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Records a signed clock reset.
pub fn insert_clock_reset(conn: &Connection, rec: &ClockResetRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO clock_resets (id, cluster_id, mark, issued, expires, kid, path, created, file) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            rec.id,
            rec.cluster_id,
            i(rec.mark),
            i(rec.issued),
            i(rec.expires),
            rec.kid,
            rec.path,
            i(rec.created),
            rec.file
        ],
    )
    .context("cannot record the clock reset in the ledger")?;
    Ok(())
}

/// Takes back the row of a clock reset whose file could not be written.
pub fn delete_clock_reset(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM clock_resets WHERE id = ?1", [id])
        .context("cannot take the clock reset back out of the ledger")?;
    Ok(())
}

/// The clock resets signed for any of `clusters`, oldest first. A ledger
/// opened read-only from before clock resets has no such table: none.
pub fn clock_resets_for(conn: &Connection, clusters: &[&str]) -> Result<Vec<ClockResetRecord>> {
    let present: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'clock_resets'",
        [],
        |r| r.get(0),
    )?;
    if present == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT id, cluster_id, mark, issued, expires, kid, path, created, file FROM clock_resets
         WHERE cluster_id = ?1 ORDER BY issued, rowid",
    )?;
    let mut rows = Vec::new();
    for cluster in clusters {
        let found = stmt
            .query_map([cluster], clock_reset_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.extend(found);
    }
    rows.sort_by_key(|r| (r.issued, r.created));
    Ok(rows)
}

/// The clock resets `ledger show` lists for a license: those signed for the
/// cluster it is bound to or any cluster its `usage` reports came from.
pub fn clock_resets_for_license(
    conn: &Connection,
    rec: &LicenseRecord,
    usage: &[UsageRecord],
) -> Result<Vec<ClockResetRecord>> {
    let mut clusters: Vec<&str> = rec.cluster.iter().map(String::as_str).collect();
    for u in usage {
        if !clusters.contains(&u.cluster_id.as_str()) {
            clusters.push(&u.cluster_id);
        }
    }
    clock_resets_for(conn, &clusters)
}

/// One clock reset by its id; `None` when the ledger has no such reset.
pub fn find_clock_reset(conn: &Connection, id: &str) -> Result<Option<ClockResetRecord>> {
    let present: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'clock_resets'",
        [],
        |r| r.get(0),
    )?;
    if present == 0 {
        return Ok(None);
    }
    let rec = conn
        .query_row(
            "SELECT id, cluster_id, mark, issued, expires, kid, path, created, file FROM clock_resets
             WHERE id = ?1",
            [id],
            clock_reset_row,
        )
        .optional()?;
    Ok(rec)
}

fn clock_reset_row(r: &Row<'_>) -> rusqlite::Result<ClockResetRecord> {
    Ok(ClockResetRecord {
        id: r.get(0)?,
        cluster_id: r.get(1)?,
        mark: u(r.get(2)?),
        issued: u(r.get(3)?),
        expires: u(r.get(4)?),
        kid: r.get(5)?,
        path: r.get(6)?,
        created: u(r.get(7)?),
        file: r.get(8)?,
    })
}

/// The licenses the ledger knows on `cluster`: those bound to it (`true`),
/// then unbound ones it sent usage reports for (`false`), oldest first.
pub fn licenses_on_cluster(conn: &Connection, cluster: &str) -> Result<Vec<(LicenseRecord, bool)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LICENSE_COLS} FROM licenses WHERE cluster = ?1 ORDER BY issued_at, rowid"
    ))?;
    let mut rows: Vec<(LicenseRecord, bool)> = stmt
        .query_map([cluster], license_row)?
        .map(|r| r.map(|l| (l, true)))
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {LICENSE_COLS} FROM licenses WHERE cluster IS NULL
           AND id IN (SELECT license_id FROM usage_reports WHERE cluster_id = ?1)
         ORDER BY issued_at, rowid"
    ))?;
    let reported = stmt
        .query_map([cluster], license_row)?
        .map(|r| r.map(|l| (l, false)))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.extend(reported);
    Ok(rows)
}
