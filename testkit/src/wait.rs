//! The bounded polls every suite uses.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// Upper bound of every wait: generous, so a loaded machine only makes a
/// test slower, never red.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` every 20 ms until it yields `Some`; panics naming `what` after
/// [`WAIT`].
pub async fn wait_until<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(what, WAIT, f).await
}

/// [`wait_until`] with another bound.
pub async fn wait_within<T, F, Fut>(what: &str, bound: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for {what} after {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetches a value every 20 ms until `ok` holds for it; after [`WAIT`],
/// panics naming `what` and showing the last value seen.
pub async fn wait_for_value<T, F, Fut>(what: &str, mut fetch: F, ok: impl Fn(&T) -> bool) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = fetch().await;
        if ok(&v) {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for {what}; last seen:\n{v:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_some() {
        let mut n = 0;
        let got = wait_until("three calls", || {
            n += 1;
            let v = (n == 3).then_some(n);
            async move { v }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "gave up waiting for nothing")]
    async fn gives_up_after_the_bound() {
        wait_within("nothing", Duration::from_millis(50), || async {
            None::<()>
        })
        .await;
    }
}
