//! The open-file limit, and a connection cap that stays below it.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit where allowed and
/// returns the soft limit now in force (`None` when it cannot be read or is
/// unlimited).
pub fn raise_nofile() -> Option<u64> {
    let cur = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (cur.current, cur.maximum) {
        if soft < hard {
            let want = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if let Err(e) = setrlimit(Resource::Nofile, want) {
                tracing::debug!(%e, soft, hard, "cannot raise the open-file limit");
            }
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The connection cap actually used: the configured one, but never closer
/// to the open-file limit than a reserve that leaves room for the database,
/// watched files, logs and outgoing connections (an eighth of the limit,
/// at least 64 descriptors).
pub fn connection_cap(configured: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile else {
        return configured.max(1);
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let reserve = (limit / 8).max(64);
    configured.min(limit.saturating_sub(reserve)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_leaves_a_reserve_below_the_fd_limit() {
        assert_eq!(connection_cap(4096, Some(1024)), 896);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(4096, Some(256)), 192);
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(10, Some(10)), 1);
    }
}
