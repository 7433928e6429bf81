//! The audit chain inside a writing transaction: the head row locked
//! first, moved in memory by each append, stored once before the commit.

use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;

use super::writes::{execute, int, query_opt};
use crate::error::ApiError;

/// The audit head as a writing transaction holds it: locked at the start,
/// moved in memory by each append, stored once before the commit.
#[derive(Debug, Clone)]
pub struct Head {
    /// Id of the last row.
    pub id: i64,
    /// Hash of the last row.
    pub hash: String,
    /// What was locked (the stored head must still be this when it moves).
    locked: (i64, String),
}

/// Takes the `audit_head` row lock: every writing transaction does this
/// first, so writes from all replicas are serial and cannot deadlock.
pub async fn lock_head(c: &ClientWrapper) -> Result<Head, ApiError> {
    let row = query_opt(
        c,
        "SELECT id, hash FROM audit_head WHERE one = 1 FOR UPDATE",
        &[],
    )
    .await?
    .ok_or_else(|| {
        ApiError::internal("the audit_head row is missing: run kaching-relay migrate")
    })?;
    let (id, hash): (i64, String) = (row.get(0), row.get(1));
    Ok(Head {
        locked: (id, hash.clone()),
        id,
        hash,
    })
}

impl Head {
    /// Stores the moved head, conditional on the one locked (never forks).
    pub async fn store(&self, c: &ClientWrapper) -> Result<(), ApiError> {
        if self.id == self.locked.0 {
            return Ok(());
        }
        let moved = execute(
            c,
            "UPDATE audit_head SET id = $1, hash = $2 WHERE one = 1 AND id = $3 AND hash = $4",
            &[&self.id, &self.hash, &self.locked.0, &self.locked.1],
        )
        .await?;
        if moved != 1 {
            return Err(ApiError::internal("the audit head moved under its lock"));
        }
        Ok(())
    }
}

/// One audit row, hashed and chained after `head` (which moves to it).
pub struct AuditRow {
    id: i64,
    time: i64,
    actor: String,
    action: String,
    subject: String,
    detail: String,
    hash: String,
    prev_hash: String,
}

impl AuditRow {
    /// The next row after `head`.
    pub fn next(
        head: &mut Head,
        time: u64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> AuditRow {
        let id = head.id + 1;
        let detail = detail.to_string();
        let hash = crate::audit::row_hash(&head.hash, id, time, actor, action, subject, &detail);
        let prev_hash = std::mem::replace(&mut head.hash, hash.clone());
        head.id = id;
        AuditRow {
            id,
            time: int(time),
            actor: actor.to_string(),
            action: action.to_string(),
            subject: subject.to_string(),
            detail,
            hash,
            prev_hash,
        }
    }

    /// Its values, in the column order of the insert.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.time,
            &self.actor,
            &self.action,
            &self.subject,
            &self.detail,
            &self.hash,
            &self.prev_hash,
        ]
    }

    /// Inserts it.
    pub async fn insert(&self, c: &ClientWrapper) -> Result<u64, ApiError> {
        execute(
            c,
            "INSERT INTO audit (id, time, actor, action, subject, detail, hash, prev_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &self.id,
                &self.time,
                &self.actor,
                &self.action,
                &self.subject,
                &self.detail,
                &self.hash,
                &self.prev_hash,
            ],
        )
        .await
    }
}

/// Appends one audit row after `head`.
pub async fn audit(
    c: &ClientWrapper,
    head: &mut Head,
    time: u64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<(), ApiError> {
    AuditRow::next(head, time, actor, action, subject, detail)
        .insert(c)
        .await
        .map(drop)
}
