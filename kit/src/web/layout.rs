//! The frame of every page: header with the product name and the app's
//! navigation, a main region, the shared stylesheet and (for live pages)
//! the live script.

use maud::{html, Markup, DOCTYPE};

/// Where an app serves the shared assets and, for live pages, its event
/// stream and the fragment the script swaps in.
#[derive(Debug, Clone, Copy)]
pub struct Assets<'a> {
    /// The app's prefix, ending in `/` (`/ui/`, `/console/`).
    pub prefix: &'a str,
    /// For a live page: (event-stream URL, live-fragment URL).
    pub live: Option<(&'a str, &'a str)>,
}

/// One navigation link.
#[derive(Debug, Clone, Copy)]
pub struct Nav<'a> {
    /// Link target (`#quotas`, `/ui/`).
    pub href: &'a str,
    /// What the reader sees.
    pub label: &'a str,
}

/// A whole page: `app` names the program (“License”, “Fleet console”),
/// `title` the page.
pub fn page(app: &str, title: &str, assets: Assets<'_>, nav: &[Nav<'_>], main: Markup) -> Markup {
    let css = format!("{}assets/kaching.css", assets.prefix);
    let js = format!("{}assets/live.js", assets.prefix);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · KACHING " (app) }
                link rel="stylesheet" href=(css);
                @if assets.live.is_some() {
                    script src=(js) defer {}
                }
            }
            body data-events=[assets.live.map(|l| l.0)] data-live=[assets.live.map(|l| l.1)] {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    span class="brand" { "KACHING" }
                    span class="app" { (app) }
                    @if !nav.is_empty() {
                        nav aria-label="Sections" {
                            ul { @for n in nav { li { a href=(n.href) { (n.label) } } } }
                        }
                    }
                    @if assets.live.is_some() {
                        span id="live-state" class="live" role="status" aria-live="polite" { "connecting…" }
                    }
                }
                main id="main" { (main) }
            }
        }
    }
}
