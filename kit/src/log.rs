//! Logging for the daemons and commands: one variable, `KACHING_LOG`, read
//! the same way by every binary (a `tracing` filter such as `info` or
//! `kaching_relay=debug,info`). `RUST_LOG` is honoured when `KACHING_LOG`
//! is unset. Logs go to stderr, with colour only on a terminal (never in
//! journald or a log file).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The variable every KACHING binary reads its log filter from.
pub const VAR: &str = "KACHING_LOG";

/// The filter `KACHING_LOG` (else `RUST_LOG`, else `default`) names. A
/// filter that does not parse falls back to `default` and says so.
pub fn filter(default: &str) -> EnvFilter {
    for var in [VAR, "RUST_LOG"] {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
                Ok(f) => return f,
                Err(e) => {
                    eprintln!(
                        "warning: {var}={text:?} is not a log filter ({e}); using {default:?}"
                    );
                    return EnvFilter::new(default);
                }
            },
            _ => {}
        }
    }
    EnvFilter::new(default)
}

/// Installs the stderr logger with [`filter`]`(default)`. Call once, first
/// thing in `main`; a second call changes nothing.
pub fn init(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// [`init`] for one-shot commands, which log only what goes wrong: when
/// the filter (`KACHING_LOG`, else `RUST_LOG`, else `default`) is a plain
/// level such as `warn`, the stderr logger is built on the first event at
/// that level or above instead of before `main` does anything (most runs
/// log nothing: `kaching-verifier check` ~40k instructions and ~10 page
/// faults fewer, docs/benchmarks.md "CLI start-up, round 2"). What is
/// printed is the same as with [`init`]; any other filter is [`init`].
pub fn init_one_shot(default: &str) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let text = [VAR, "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|t| !t.trim().is_empty()))
        .unwrap_or_else(|| default.to_string());
    match text.trim().parse::<LevelFilter>() {
        Ok(max) => {
            let _ = Lazy::new(max, std::io::stderr, std::io::stderr().is_terminal()).try_init();
        }
        Err(_) => init(default),
    }
}

use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::fmt::MakeWriter;

type Inner = Box<dyn Subscriber + Send + Sync>;

/// A level-filtered `fmt` subscriber built on first use. Events and spans
/// below `max` are turned away by the level alone, without building it.
struct Lazy<W> {
    max: LevelFilter,
    writer: W,
    ansi: bool,
    inner: OnceLock<Inner>,
}

impl<W> Lazy<W>
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    fn new(max: LevelFilter, writer: W, ansi: bool) -> Lazy<W> {
        Lazy {
            max,
            writer,
            ansi,
            inner: OnceLock::new(),
        }
    }

    fn inner(&self) -> &Inner {
        self.inner.get_or_init(|| {
            Box::new(
                tracing_subscriber::fmt()
                    .with_max_level(self.max)
                    .with_writer(self.writer.clone())
                    .with_ansi(self.ansi)
                    .finish(),
            )
        })
    }
}

impl<W> Subscriber for Lazy<W>
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.max >= *metadata.level() {
            Interest::always()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner().new_span(span)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner().record(span, values)
    }
    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner().record_follows_from(span, follows)
    }
    fn event(&self, event: &Event<'_>) {
        self.inner().event(event)
    }
    fn enter(&self, span: &Id) {
        self.inner().enter(span)
    }
    fn exit(&self, span: &Id) {
        self.inner().exit(span)
    }
    fn clone_span(&self, id: &Id) -> Id {
        self.inner().clone_span(id)
    }
    fn try_close(&self, id: Id) -> bool {
        self.inner().try_close(id)
    }
    fn current_span(&self) -> Current {
        match self.inner.get() {
            Some(inner) => inner.current_span(),
            None => Current::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buf {
        type Writer = Buf;
        fn make_writer(&'w self) -> Buf {
            self.clone()
        }
    }

    fn events() {
        tracing::info!("not shown");
        let span = tracing::warn_span!("load", file = "lic.asc");
        let _g = span.enter();
        tracing::debug!(n = 1, "not shown either");
        tracing::warn!(
            path = "/etc/x",
            "cannot read the revocation list: using the last one"
        );
        tracing::error!("state database is unreadable");
    }

    /// The lines without their timestamp (the first word).
    fn lines(b: &Buf) -> Vec<String> {
        let text = String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| l.split_once(' ').unwrap().1.trim_start().to_string())
            .collect()
    }

    #[test]
    fn one_shot_logger_prints_what_the_eager_one_prints() {
        let eager = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("warn"))
            .with_writer(eager.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, events);
        let lazy = Buf::default();
        tracing::subscriber::with_default(
            Lazy::new(LevelFilter::WARN, lazy.clone(), false),
            events,
        );
        let want = lines(&eager);
        assert_eq!(want.len(), 2, "{want:?}");
        assert!(want[0].contains("WARN load{file=\"lic.asc\"}"), "{want:?}");
        assert_eq!(lines(&lazy), want);
    }

    #[test]
    fn one_shot_logger_is_built_only_when_something_is_logged() {
        let lazy = Lazy::new(LevelFilter::WARN, Buf::default(), false);
        let d = tracing::Dispatch::new(lazy);
        tracing::dispatcher::with_default(&d, || {
            tracing::info!("quiet");
            let _s = tracing::info_span!("quiet").entered();
        });
        assert!(d.downcast_ref::<Lazy<Buf>>().unwrap().inner.get().is_none());
        tracing::dispatcher::with_default(&d, || tracing::warn!("loud"));
        assert!(d.downcast_ref::<Lazy<Buf>>().unwrap().inner.get().is_some());
    }
}
