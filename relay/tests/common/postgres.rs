//! A fresh PostgreSQL database per test, on the server named by
//! `KACHING_TEST_POSTGRES` (`eval "$(bash scripts/ci-postgres)"` starts one
//! and sets it). Without it the PostgreSQL tests skip with one line, and
//! fail under `CI=true`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// The variable naming the test server.
pub const VAR: &str = "KACHING_TEST_POSTGRES";

/// The server's URL, or `None` (after saying so once) when it is not set.
pub fn server() -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let line = "PostgreSQL suites skipped: set KACHING_TEST_POSTGRES=postgres://… (see scripts/ci-postgres)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{line} (CI=true: these suites must run here)"
            );
            static SAID: Once = Once::new();
            SAID.call_once(|| kaching_testkit::skip(line));
            None
        }
    }
}

/// A database made for one test, dropped (with its connections) when this is.
pub struct PgDb {
    /// Its URL.
    pub url: String,
    server: String,
    name: String,
}

/// A new empty database on the test server; `None` when there is none.
pub async fn fresh() -> Option<PgDb> {
    let server = server()?;
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "kt_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        kaching_testkit::now()
    );
    let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {VAR}: {e}"));
    tokio::spawn(conn);
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT.get_or_init(|| drop_left_over(&client)).await;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| {
            panic!("cannot create a test database (does the role have CREATEDB?): {e}")
        });
    let url = with_dbname(&server, &name);
    Some(PgDb { url, server, name })
}

/// `url` pointing at database `name` instead.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{name}{query}")
}

impl PgDb {
    /// A client on this database (its connection driven by a task).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for PgDb {
    /// Drops the database from a thread of its own, not waited for. On
    /// PostgreSQL 15 a `DROP DATABASE` waits until every backend of the
    /// server has absorbed a ProcSignalBarrier, and a backend idle on
    /// another test's connection does so only when that test next talks to
    /// it (or about a minute later). A test waiting here would hold its own
    /// connections idle in turn, so two tests ending together stalled each
    /// other for a minute. Databases a killed run left are dropped by the
    /// next run's first [`fresh`].
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&server, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
    }
}

/// Drops the test databases of runs that are gone (`kt_<pid>_…` whose
/// process no longer exists): once per test binary, before its first
/// database, when no test of it holds a connection yet.
async fn drop_left_over(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'kt\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(1).unwrap_or("");
        let gone = !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !std::path::Path::new("/proc").join(pid).exists();
        if gone {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}
