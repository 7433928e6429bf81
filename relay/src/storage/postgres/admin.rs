//! What the `kaching-relay` CLI does on PostgreSQL: tokens, `audit verify`,
//! and `migrate --from sqlite://… --to postgres://…`.

use std::path::Path;

use anyhow::Context;
use deadpool_postgres::Pool;
use rusqlite::types::Value;

use super::writes::{execute, int, query, query_opt, uint, Head};
use crate::audit::{Row, Verified};
use crate::error::ApiError;
use crate::tokens::{Scope, TokenInfo};

fn api(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

/// Runs `f` in a writing transaction (head lock first), committing on `Ok`.
async fn in_tx<T>(
    pool: &Pool,
    f: impl AsyncFnOnce(&deadpool_postgres::ClientWrapper, &mut Head) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let c = pool.get().await.context("cannot connect to PostgreSQL")?;
    let mut head = match super::begin(&c).await {
        Ok(h) => h,
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            return Err(api(e));
        }
    };
    let done = match f(&c, &mut head).await {
        Ok(v) => head.store(&c).await.map(|()| v).map_err(api),
        Err(e) => Err(e),
    };
    match done {
        Ok(v) => {
            c.batch_execute("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// `token create`: stores the hash and audits it; returns the secret.
pub async fn create_token(
    pool: &Pool,
    scope: Scope,
    name: &str,
    now: u64,
) -> anyhow::Result<String> {
    let token = crate::tokens::generate();
    in_tx(pool, async |c, head| {
        let taken = query_opt(c, "SELECT 1 FROM tokens WHERE name = $1 AND revoked_at IS NULL", &[&name])
            .await
            .map_err(api)?
            .is_some();
        if taken {
            anyhow::bail!(
                "a live token named {name:?} exists already: pick another --name, or revoke it first (`kaching-relay token revoke {name}`)"
            );
        }
        execute(
            c,
            "INSERT INTO tokens (hash, name, scope, created_at) VALUES ($1, $2, $3, $4)",
            &[
                &crate::tokens::hash(&token),
                &name,
                &scope.as_str(),
                &int(now),
            ],
        )
        .await
        .map_err(api)?;
        super::writes::audit(
            c,
            head,
            now,
            "cli",
            "token_create",
            name,
            &serde_json::json!({"scope": scope.as_str()}),
        )
        .await
        .map_err(api)?;
        Ok(())
    })
    .await?;
    Ok(token)
}

/// `token list`.
pub async fn list_tokens(pool: &Pool) -> anyhow::Result<Vec<TokenInfo>> {
    let c = pool.get().await.context("cannot connect to PostgreSQL")?;
    Ok(query(
        &c,
        "SELECT name, scope, created_at, revoked_at FROM tokens ORDER BY created_at, name",
        &[],
    )
    .await
    .map_err(api)?
    .iter()
    .map(|r| TokenInfo {
        name: r.get(0),
        scope: r.get(1),
        created_at: uint(r.get(2)),
        revoked_at: r.get::<_, Option<i64>>(3).map(uint),
    })
    .collect())
}

/// `token revoke`.
pub async fn revoke_token(pool: &Pool, name: &str, now: u64) -> anyhow::Result<()> {
    in_tx(pool, async |c, head| {
        let n = execute(
            c,
            "UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
            &[&int(now), &name],
        )
        .await
        .map_err(api)?;
        if n == 0 {
            anyhow::bail!("no live token named {name:?}: see `kaching-relay token list`");
        }
        super::writes::audit(
            c,
            head,
            now,
            "cli",
            "token_revoke",
            name,
            &serde_json::json!({}),
        )
        .await
        .map_err(api)?;
        Ok(())
    })
    .await
}

/// Rows read at a time by `audit verify` and `migrate`.
const CHUNK: i64 = 5_000;

/// `audit verify`: walks the chain in chunks, inside one read-only snapshot.
pub async fn verify_audit(pool: &Pool) -> anyhow::Result<Verified> {
    verify_audit_from(pool, None).await
}

/// [`verify_audit`] from a row already verified (see
/// `crate::audit::verify_from`).
pub async fn verify_audit_from(
    pool: &Pool,
    from: Option<(i64, String)>,
) -> anyhow::Result<Verified> {
    let mut c = pool.get().await.context("cannot connect to PostgreSQL")?;
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head = tx
        .query_opt("SELECT id, hash FROM audit_head WHERE one = 1", &[])
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
    let mut walk = crate::audit::Walk::new();
    if let Some((id, hash)) = from {
        let stored = tx
            .query_opt("SELECT hash FROM audit WHERE id = $1", &[&id])
            .await?
            .map(|r| r.get::<_, String>(0));
        walk = crate::audit::Walk::resume(id, &hash, stored.as_deref())?;
    }
    let mut after = walk.rows();
    loop {
        let rows = tx
            .query(
                "SELECT id, time, actor, action, subject, detail, hash FROM audit
                 WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &CHUNK],
            )
            .await?;
        for r in &rows {
            walk.push(&audit_row(r))?;
            after = r.get(0);
        }
        if (rows.len() as i64) < CHUNK {
            break;
        }
    }
    let pending = tx
        .query_opt("SELECT beats FROM audit_pending WHERE one = 1", &[])
        .await?
        .map_or(0, |r| uint(r.get(0)));
    tx.commit().await?;
    let mut v = walk.finish(head)?;
    v.pending = pending;
    Ok(v)
}

/// What `migrate --from sqlite` copied, table by table.
pub type Copied = Vec<(&'static str, usize)>;

/// The tables copied, with their columns (the same names on both sides).
const TABLES: &[(&str, &[&str])] = &[
    (
        "licenses",
        &[
            "license_id",
            "bytes",
            "customer",
            "tier",
            "expires_at",
            "first_seen",
        ],
    ),
    (
        "clusters",
        &[
            "cluster_id",
            "license_id",
            "cluster_key",
            "hostname",
            "status",
            "activated_at",
            "ended_at",
            "last_seen",
            "last_seq",
            "heartbeat_time",
            "state",
            "active_nodes",
            "quotas",
            "verifier_version",
            "heartbeats",
            "report_seq",
            "report_hash",
            "report_mark",
            "hour",
            "hour_beats",
            "hour_min_nodes",
            "hour_max_nodes",
            "hour_last_nodes",
            "hour_last_at",
        ],
    ),
    (
        "heartbeat_hours",
        &[
            "hour",
            "cluster_id",
            "beats",
            "min_nodes",
            "max_nodes",
            "last_nodes",
            "last_at",
            "quotas",
        ],
    ),
    (
        "heartbeats",
        &[
            "id",
            "cluster_id",
            "seq",
            "time",
            "received_at",
            "state",
            "active_nodes",
            "quotas",
        ],
    ),
    (
        "revocation_lists",
        &["version", "bytes", "kid", "received_at"],
    ),
    ("roots", &["version", "bytes", "received_at"]),
    (
        "upgrade_requests",
        &[
            "id",
            "license_id",
            "cluster_id",
            "requested_tier",
            "message",
            "time",
            "received_at",
            "source",
        ],
    ),
    (
        "tokens",
        &["hash", "name", "scope", "created_at", "revoked_at"],
    ),
    ("meta", &["key", "value"]),
    ("audit_pending", &["one", "since", "beats", "frontier"]),
    (
        "anomalies",
        &["id", "cluster_id", "license_id", "at", "kind", "detail"],
    ),
    (
        "usage_reports",
        &[
            "id",
            "cluster_id",
            "license_id",
            "seq",
            "hash",
            "bytes",
            "received_at",
        ],
    ),
    (
        "usage_receipts",
        &["cluster_id", "report_seq", "bytes", "received_at"],
    ),
];

/// A SQLite value as a PostgreSQL parameter.
enum Param {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Param {
    fn of(v: Value) -> Param {
        match v {
            Value::Null => Param::Null,
            Value::Integer(i) => Param::Int(i),
            Value::Real(f) => Param::Text(f.to_string()),
            Value::Text(t) => Param::Text(t),
            Value::Blob(b) => Param::Bytes(b),
        }
    }

    fn sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Null => &None::<i64>,
            Param::Int(i) => i,
            Param::Text(t) => t,
            Param::Bytes(b) => b,
        }
    }
}

/// Copies one table, reading the source row by row and inserting
/// [`CHUNK`] rows per statement (the history table can be large).
async fn copy_table(
    src: &rusqlite::Connection,
    c: &deadpool_postgres::ClientWrapper,
    table: &str,
    select: &str,
    columns: &[&str],
) -> anyhow::Result<usize> {
    let per_row = columns.len();
    // PostgreSQL takes at most 65535 parameters per statement.
    let chunk = (60_000 / per_row).min(usize::try_from(CHUNK).unwrap_or(1000));
    let mut stmt = src.prepare(select)?;
    let mut rows = stmt.query([])?;
    let mut pending: Vec<Param> = Vec::with_capacity(chunk * per_row);
    let mut total = 0;
    loop {
        let row = rows.next()?;
        if let Some(r) = row {
            for i in 0..per_row {
                pending.push(Param::of(r.get::<_, Value>(i)?));
            }
        }
        let n = pending.len() / per_row;
        if n == chunk || (row.is_none() && n > 0) {
            // SQLite hands every integer over as i64: cast, so it lands in
            // INTEGER columns too (an assignment cast); a null is written
            // as NULL, whatever the column's type.
            let mut bound = 0;
            let values: Vec<String> = pending
                .chunks(per_row)
                .map(|row| {
                    let ps: Vec<String> = row
                        .iter()
                        .map(|p| match p {
                            Param::Null => "NULL".to_string(),
                            Param::Int(_) => {
                                bound += 1;
                                format!("${bound}::BIGINT")
                            }
                            _ => {
                                bound += 1;
                                format!("${bound}")
                            }
                        })
                        .collect();
                    format!("({})", ps.join(", "))
                })
                .collect();
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES {}",
                columns.join(", "),
                values.join(", ")
            );
            let params: Vec<_> = pending
                .iter()
                .filter(|p| !matches!(p, Param::Null))
                .map(Param::sql)
                .collect();
            c.execute(insert.as_str(), &params)
                .await
                .with_context(|| format!("copying {table}"))?;
            total += n;
            pending.clear();
        }
        if row.is_none() {
            return Ok(total);
        }
    }
}

/// Copies a single-node relay's SQLite database at `from` into the
/// PostgreSQL database behind `pool`, in one transaction: every table,
/// and the audit chain row for row (its hashes do not depend on the
/// backend, so it verifies the same). Refused unless the target holds no
/// state yet. Stop the SQLite relay first: writes after the copy are lost.
pub async fn copy_from_sqlite(from: &Path, pool: &Pool) -> anyhow::Result<Copied> {
    if !from.exists() {
        anyhow::bail!("no SQLite database at {}: check --from", from.display());
    }
    // Brought to this release's schema first, as a relay starting on it would.
    let src = crate::db::open_and_migrate(from)?;
    crate::storage::sqlite::create_mailbox(&src)?;
    // One read snapshot of the source for the whole copy.
    src.execute_batch("BEGIN")?;
    let audit_ok = crate::audit::verify(&src).with_context(|| {
        format!(
            "the audit log of {} does not verify; not copying it",
            from.display()
        )
    })?;
    let mut copied = Vec::new();
    let target_rows = in_tx(pool, async |c, head| {
        for table in ["licenses", "clusters", "tokens", "audit", "revocation_lists", "roots"] {
            let n = query_opt(c, &format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map_err(api)?
                .map_or(0, |r| r.get::<_, i64>(0));
            if n > 0 {
                anyhow::bail!(
                    "the PostgreSQL database already holds {table} ({n} rows): migrate into an empty database (create a new one, or drop this one if it is a failed earlier copy)"
                );
            }
        }
        execute(c, "DELETE FROM meta", &[]).await.map_err(api)?;
        for (table, columns) in TABLES {
            let select = format!("SELECT {} FROM {table}", columns.join(", "));
            let n = copy_table(&src, c, table, &select, columns).await?;
            copied.push((*table, n));
        }
        // Serial ids continue after the copied ones.
        for table in ["heartbeats", "upgrade_requests", "anomalies", "usage_reports"] {
            c.batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            ))
            .await?;
        }
        // Each row with the hash it chains to (the target's fork guard).
        let select = format!(
            "SELECT id, time, actor, action, subject, detail, hash,
                    COALESCE(LAG(hash) OVER (ORDER BY id), '{}') FROM audit ORDER BY id",
            crate::audit::genesis()
        );
        let audit_columns = [
            "id", "time", "actor", "action", "subject", "detail", "hash", "prev_hash",
        ];
        let n = copy_table(&src, c, "audit", &select, &audit_columns).await?;
        // The head moves to the copied chain's (stored by in_tx).
        head.id = audit_ok.rows;
        head.hash.clone_from(&audit_ok.head);
        copied.push(("audit", n));
        Ok(copied)
    })
    .await?;
    src.execute_batch("COMMIT")?;
    Ok(target_rows)
}

/// Reads an audit row selected as `id, time, actor, action, subject,
/// detail, hash` (PostgreSQL; [`Row::read`] on SQLite).
pub fn audit_row(r: &tokio_postgres::Row) -> Row {
    Row {
        id: r.get(0),
        time: uint(r.get(1)),
        actor: r.get(2),
        action: r.get(3),
        subject: r.get(4),
        detail: r.get(5),
        hash: r.get(6),
    }
}
