//! One function per subcommand. Output meant for scripts goes to stdout
//! through `kaching_kit::stdout` (a closed pipe ends quietly); notes for the
//! person at the terminal go to stderr.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use kaching_kit::stdout;
use kaching_relay::storage::{postgres, Database};
use kaching_relay::{audit, db, state, tokens, Config};

use crate::cli::{AuditCommand, Cli, Command, TokenCommand};

/// Runs the subcommand `cli` names.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let Cli { config, command } = cli;
    let load = || Config::load(config.as_deref());
    match command {
        Command::DefaultConfig => Ok(stdout::print(kaching_relay::config::DEFAULT_CONFIG)?),
        Command::Serve => serve(load()?),
        Command::Token { command } => match load()?.database()? {
            Database::Sqlite(path) => token(&path, command),
            Database::Postgres(url) => block_on(pg_token(&url, command)),
        },
        Command::Audit {
            command: AuditCommand::Verify,
        } => match load()?.database()? {
            Database::Sqlite(path) => audit_verify(&path),
            Database::Postgres(url) => block_on(async move {
                let pool = postgres::pool(&url)?;
                print_verified(&postgres::admin::verify_audit(&pool).await?)
            }),
        },
        Command::Migrate { from, to } => match (from, to) {
            (Some(from), Some(to)) => migrate_copy(&from, &to),
            _ => migrate(&load()?.database()?),
        },
        Command::RelayKey => relay_key(&load()?.key_path()),
        Command::Completions { shell } => Ok(kaching_kit::manual::completions(
            crate::cli::command(),
            shell,
        )?),
        Command::Man { out } => Ok(kaching_kit::manual::man(
            crate::cli::command(),
            out.as_deref(),
        )?),
    }
}

/// `serve`: logs to stderr, prints the bound address, serves until SIGTERM or Ctrl-C.
fn serve(config: Config) -> anyhow::Result<()> {
    kaching_kit::log::init("info");
    // Refuse a config without vendor keys (or root), with a root that does
    // not verify, or with a tier catalog that does not load, before taking the port.
    config.trusted_keys()?;
    config.initial_root()?;
    config.tier_catalog()?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        // Before the address is announced: a SIGTERM from then on stops cleanly.
        let signalled = kaching_kit::shutdown::signal();
        // The port first: a relay that cannot listen leaves the database
        // (and the start it records) alone.
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(kaching_kit::serve::cannot_listen(
                    &config.listen,
                    &e,
                    "`listen`"
                ))
            })?;
        // The database and the relay key are opened and checked before the
        // address is announced: scripts read that line as "ready".
        let relay = kaching_relay::prepare(config).await?;
        kaching_kit::serve::announce(&listener)?;
        let shutdown = async {
            signalled.await;
            tracing::info!("shutting down");
        };
        relay.serve(listener, shutdown).await
    })
}

/// `token create|list|revoke`.
fn token(db_path: &Path, command: TokenCommand) -> anyhow::Result<()> {
    // A token made in a database no relay serves is one it never accepts.
    must_exist(db_path)?;
    let mut conn = db::open_and_migrate(db_path)?;
    let now = db::now();
    match command {
        TokenCommand::Create { scope, name } => {
            let name = name.unwrap_or_else(|| format!("{scope}-{now}"));
            let token = tokens::create(&mut conn, scope, &name, now)?;
            eprintln!("created {scope} token {name:?}; it is shown only this once:");
            stdout::println(&token)?;
        }
        TokenCommand::List => print_tokens(tokens::list(&conn)?)?,
        TokenCommand::Revoke { name } => {
            tokens::revoke(&mut conn, &name, now)?;
            eprintln!("revoked token {name:?}");
        }
    }
    Ok(())
}

fn print_tokens(all: Vec<tokens::TokenInfo>) -> anyhow::Result<()> {
    let mut out = format!("{:<24} {:<8} {:<21} revoked\n", "name", "scope", "created");
    for t in all {
        writeln!(
            out,
            "{:<24} {:<8} {:<21} {}",
            t.name,
            t.scope,
            kaching_core::time::rfc3339(t.created_at),
            t.revoked_at
                .map(kaching_core::time::rfc3339)
                .unwrap_or_else(|| "-".into())
        )?;
    }
    stdout::print(&out)?;
    Ok(())
}

/// `audit verify`: walks the hash chain of an existing database (never creates one).
fn audit_verify(db_path: &Path) -> anyhow::Result<()> {
    must_exist(db_path)?;
    let conn = db::open(db_path)?;
    print_verified(&audit::verify(&conn)?)
}

/// Refuses a SQLite database that is not there: only `serve` and
/// `migrate` create one (a wrong data_dir must not yield an empty database
/// that looks right).
fn must_exist(db_path: &Path) -> anyhow::Result<()> {
    if db_path.symlink_metadata().is_err() {
        anyhow::bail!(
            "no database at {}: check data_dir (or `database`); a new relay's database is created by `kaching-relay serve` (or `kaching-relay migrate`)",
            db_path.display()
        );
    }
    Ok(())
}

fn print_verified(v: &audit::Verified) -> anyhow::Result<()> {
    stdout::println(&format!(
        "audit log intact: {} rows, head {}",
        v.rows, v.head
    ))?;
    if v.pending > 0 {
        stdout::println(&format!(
            "{} heartbeat(s) accepted since the last seal, not yet in a row: the relay seals them within a minute (and when it stops)",
            v.pending
        ))?;
    }
    Ok(())
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

/// `token create|list|revoke` on PostgreSQL.
async fn pg_token(url: &str, command: TokenCommand) -> anyhow::Result<()> {
    let pool = postgres::connect_and_migrate(url).await?;
    let now = db::now();
    match command {
        TokenCommand::Create { scope, name } => {
            let name = name.unwrap_or_else(|| format!("{scope}-{now}"));
            let token = postgres::admin::create_token(&pool, scope, &name, now).await?;
            eprintln!("created {scope} token {name:?}; it is shown only this once:");
            stdout::println(&token)?;
        }
        TokenCommand::List => print_tokens(postgres::admin::list_tokens(&pool).await?)?,
        TokenCommand::Revoke { name } => {
            postgres::admin::revoke_token(&pool, &name, now).await?;
            eprintln!("revoked token {name:?}");
        }
    }
    Ok(())
}

/// `migrate`: the configured database's schema, brought up to date.
fn migrate(database: &Database) -> anyhow::Result<()> {
    match database {
        // The one admin command that may make the database: a new relay's
        // tokens can be created before it first serves.
        Database::Sqlite(path) => {
            db::open_and_migrate(path)?;
            eprintln!("schema of {} is up to date", path.display());
        }
        Database::Postgres(url) => block_on(async {
            postgres::connect_and_migrate(url).await?;
            eprintln!("schema of {database:?} is up to date");
            Ok(())
        })?,
    }
    Ok(())
}

/// `migrate --from sqlite://… --to postgres://…`.
fn migrate_copy(from: &str, to: &str) -> anyhow::Result<()> {
    let Database::Sqlite(path) = Database::parse(from).context("--from")? else {
        anyhow::bail!("--from must be a SQLite database: sqlite:///var/lib/kaching-relay/relay.db");
    };
    let Database::Postgres(url) = Database::parse(to).context("--to")? else {
        anyhow::bail!(
            "--to must be a PostgreSQL database: postgres://user:password@host:5432/dbname"
        );
    };
    must_exist(&path).context("--from")?;
    block_on(async move {
        let pool = postgres::connect_and_migrate(&url).await?;
        let copied = postgres::admin::copy_from_sqlite(&path, &pool).await?;
        let mut out = String::new();
        for (table, n) in copied {
            writeln!(out, "{table:<18} {n} rows")?;
        }
        stdout::print(&out)?;
        let v = postgres::admin::verify_audit(&pool).await?;
        eprintln!(
            "copied {} into {}; audit log intact there: {} rows, head {}",
            path.display(),
            kaching_relay::storage::redact(&url),
            v.rows,
            v.head
        );
        Ok(())
    })
}

/// `relay-key`: prints the public key clusters pin, creating the key pair on first use.
fn relay_key(key_path: &Path) -> anyhow::Result<()> {
    let key = state::load_or_create_key(key_path)?;
    stdout::print(&key.public().to_pem())?;
    eprintln!("kid {}", key.public().kid());
    Ok(())
}
