//! Bearer tokens with scopes: created by the CLI (shown once, stored as a
//! SHA-256 hash), checked on every vendor-side request.

use std::fmt;
use std::str::FromStr;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use kaching_core::keys::hex;

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every vendor-side endpoint.
    Admin,
    /// `PUT /v1/revocations` and `PUT /v1/roots`.
    Publish,
    /// License status and quotas, filing upgrade requests.
    Whoosh,
}

impl Scope {
    /// The spelling stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Publish => "publish",
            Scope::Whoosh => "whoosh",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Scope::Admin),
            "publish" => Ok(Scope::Publish),
            "whoosh" => Ok(Scope::Whoosh),
            _ => Err(format!("unknown scope {s:?}: use admin, publish or whoosh")),
        }
    }
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A fresh token: `kr_` and 32 random bytes in hex.
pub fn generate() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    format!("kr_{}", hex(&b))
}

/// Stores a new token and audits it; returns the secret (shown once).
pub fn create(conn: &mut Connection, scope: Scope, name: &str, now: u64) -> anyhow::Result<String> {
    let token = generate();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let taken: bool = tx
        .query_row(
            "SELECT 1 FROM tokens WHERE name = ?1 AND revoked_at IS NULL",
            [name],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if taken {
        anyhow::bail!(
            "a live token named {name:?} exists already: pick another --name, or revoke it first (`kaching-relay token revoke {name}`)"
        );
    }
    tx.execute(
        "INSERT INTO tokens (hash, name, scope, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash(&token), name, scope.as_str(), now],
    )?;
    crate::audit::append(
        &tx,
        now,
        "cli",
        "token_create",
        name,
        &serde_json::json!({"scope": scope.as_str()}),
    )?;
    tx.commit()?;
    Ok(token)
}

/// Every token, oldest first.
pub fn list(conn: &Connection) -> anyhow::Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare(
        "SELECT name, scope, created_at, revoked_at FROM tokens ORDER BY created_at, name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TokenInfo {
            name: r.get(0)?,
            scope: r.get(1)?,
            created_at: r.get(2)?,
            revoked_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a token by name; it stops working at once.
pub fn revoke(conn: &mut Connection, name: &str, now: u64) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE tokens SET revoked_at = ?1 WHERE name = ?2 AND revoked_at IS NULL",
        params![now, name],
    )?;
    if n == 0 {
        anyhow::bail!("no live token named {name:?}: see `kaching-relay token list`");
    }
    crate::audit::append(
        &tx,
        now,
        "cli",
        "token_revoke",
        name,
        &serde_json::json!({}),
    )?;
    tx.commit()?;
    Ok(())
}

/// Looks a presented token up: `Some((name, scope))` when live.
pub fn lookup(conn: &Connection, token: &str) -> rusqlite::Result<Option<(String, Scope, bool)>> {
    conn.prepare_cached("SELECT name, scope, revoked_at IS NOT NULL FROM tokens WHERE hash = ?1")?
        .query_row([hash(token)], |r| {
            let scope: String = r.get(1)?;
            Ok((r.get(0)?, scope.parse().unwrap_or(Scope::Whoosh), r.get(2)?))
        })
        .optional()
}
