//! The pieces pages are built from. Every text argument is escaped by maud;
//! none of them takes raw HTML but through `Markup` built the same way.

use maud::{html, Markup};
use std::fmt::Write as _;

/// How a badge or banner is coloured: good, caution, bad or neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Everything works.
    Good,
    /// Works, but someone should act soon.
    Warn,
    /// Does not work, or was refused.
    Bad,
    /// Information.
    Info,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Info => "info",
        }
    }
}

/// A short coloured label (a state, an urgency); `id` lets tests and the
/// live script find it.
pub fn badge(tone: Tone, text: &str, id: Option<&str>) -> Markup {
    html! { span class={ "badge " (tone.class()) } id=[id] { (text) } }
}

/// A full-width message box; `Bad` and `Warn` are announced to screen
/// readers as alerts.
pub fn banner(tone: Tone, title: &str, body: Markup) -> Markup {
    let role = if matches!(tone, Tone::Bad | Tone::Warn) {
        "alert"
    } else {
        "status"
    };
    html! {
        div class={ "banner " (tone.class()) } role=(role) {
            strong { (title) } " " (body)
        }
    }
}

/// A titled section of a page, reachable as `#id` from the navigation.
pub fn section(id: &str, title: &str, body: Markup) -> Markup {
    html! {
        section id=(id) aria-labelledby={ (id) "-h" } {
            h2 id={ (id) "-h" } { (title) }
            (body)
        }
    }
}

/// A card: a small box with a heading, for one item of a grid.
pub fn card(title: &str, tone: Option<Tone>, body: Markup) -> Markup {
    html! {
        article class={ "card" @if let Some(t) = tone { " " (t.class()) } } {
            h3 { (title) }
            (body)
        }
    }
}

/// A usage bar of `used` against `limit` with marks at 80 % and 90 %;
/// `label` names it for screen readers, `caption` is shown under it.
pub fn bar(label: &str, used: u64, limit: u64, caption: Markup) -> Markup {
    let tone = match used.saturating_mul(100).checked_div(limit) {
        _ if limit == 0 && used > 0 => Tone::Bad,
        None => Tone::Info,
        Some(p) if p >= 100 => Tone::Bad,
        Some(p) if p >= 80 => Tone::Warn,
        Some(_) => Tone::Good,
    };
    // `meter` is native and accessible; its fill needs no inline style,
    // so the policy can stay free of 'unsafe-inline'.
    html! {
        div class={ "bar " (tone.class()) } {
            meter min="0" max=(limit.max(1)) low=(limit * 8 / 10) high=(limit * 9 / 10)
                optimum="0" value=(used.min(limit.max(1))) aria-label=(label) {}
            span class="marks" aria-hidden="true" {}
            p class="caption" { (caption) }
        }
    }
}

/// A table with a header row; each row is a list of cells.
pub fn table(caption: &str, head: &[&str], rows: &[Vec<Markup>]) -> Markup {
    html! {
        div class="table" {
            table {
                caption { (caption) }
                thead { tr { @for h in head { th scope="col" { (h) } } } }
                tbody {
                    @for r in rows { tr { @for c in r { td { (c) } } } }
                }
            }
        }
    }
}

/// A list of name → value pairs.
pub fn facts(items: &[(&str, Markup)]) -> Markup {
    html! {
        dl class="facts" {
            @for (k, v) in items { div { dt { (k) } dd { (v) } } }
        }
    }
}

/// A labelled single-line text input (`datalist` offers suggestions).
pub fn text_field(label: &str, name: &str, value: &str, options: &[String]) -> Markup {
    let list = format!("{name}-options");
    html! {
        div class="field" {
            label for=(name) { (label) }
            input type="text" id=(name) name=(name) value=(value)
                list=[(!options.is_empty()).then_some(list.as_str())] required;
            @if !options.is_empty() {
                datalist id=(list) { @for o in options { option value=(o) {} } }
            }
        }
    }
}

/// A labelled multi-line text input.
pub fn text_area(label: &str, name: &str, max: usize) -> Markup {
    html! {
        div class="field" {
            label for=(name) { (label) }
            textarea id=(name) name=(name) rows="3" maxlength=(max) {}
        }
    }
}

/// A labelled password input (tokens).
pub fn secret_field(label: &str, name: &str) -> Markup {
    html! {
        div class="field" {
            label for=(name) { (label) }
            input type="password" id=(name) name=(name) autocomplete="current-password" required;
        }
    }
}

/// A labelled single-line input that may be left empty: `kind` is the
/// input type (`text`, `number`, `search`), `hint` is shown under it and
/// tied to it for screen readers.
pub fn optional_field(label: &str, name: &str, kind: &str, value: &str, hint: &str) -> Markup {
    optional_field_with_id(name, label, name, kind, value, hint)
}

/// [`optional_field`] with its element id apart from its form name, for a
/// page that holds the same field in several forms.
pub fn optional_field_with_id(
    id: &str,
    label: &str,
    name: &str,
    kind: &str,
    value: &str,
    hint: &str,
) -> Markup {
    let hint_id = format!("{id}-hint");
    html! {
        div class="field" {
            label for=(id) { (label) }
            input type=(kind) id=(id) name=(name) value=(value)
                aria-describedby=[(!hint.is_empty()).then_some(hint_id.as_str())];
            @if !hint.is_empty() { span class="caption" id=(hint_id) { (hint) } }
        }
    }
}

/// A labelled choice among `options` (value, text); `selected` is the value
/// chosen.
pub fn select_field(
    label: &str,
    name: &str,
    options: &[(String, String)],
    selected: &str,
) -> Markup {
    html! {
        div class="field" {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                @for (v, t) in options {
                    option value=(v) selected[v == selected] { (t) }
                }
            }
        }
    }
}

/// The hidden anti-forgery field every form carries (see [`super::guard`]).
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A small line chart of `values` (oldest first) as inline SVG: no script,
/// no style attribute, so the strict policy holds. `label` names it for
/// screen readers (the `<title>` of an `img`) and is its tooltip. One
/// unit of the view box per value, stretched to the size the stylesheet
/// gives `.spark` (its line keeps its width): a console page draws dozens,
/// so each is as few bytes as it can be.
pub fn sparkline(label: &str, values: &[u64]) -> Markup {
    const H: u64 = 24;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let mut points = String::with_capacity(values.len() * 6);
    for (i, v) in values.iter().enumerate() {
        let y = H - 1 - v.saturating_mul(H - 2) / max;
        let sep = if i > 0 { " " } else { "" };
        // Writing to a String cannot fail.
        let _ = write!(points, "{sep}{i},{y}");
    }
    html! {
        svg class="spark" role="img" viewBox={ "0 0 " (values.len().max(2) - 1) " " (H) }
            preserveAspectRatio="none" {
            title { (label) }
            polyline points=(points) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_in_every_component() {
        let evil = "<script>alert(1)</script>";
        let out = [
            badge(Tone::Bad, evil, None),
            banner(Tone::Bad, evil, html! { (evil) }),
            card(evil, None, html! {}),
            facts(&[(evil, html! { (evil) })]),
            table(evil, &[evil], &[vec![html! { (evil) }]]),
            text_field(evil, "f", evil, &[evil.to_string()]),
            optional_field(evil, "g", "text", evil, evil),
            select_field(evil, "h", &[(evil.to_string(), evil.to_string())], evil),
            sparkline(evil, &[1, 2]),
        ]
        .map(|m| m.into_string())
        .concat();
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }

    #[test]
    fn a_sparkline_scales_to_its_peak() {
        let s = sparkline("beats", &[0, 5, 10]).into_string();
        assert!(s.contains(r#"viewBox="0 0 2 24""#), "{s}");
        assert!(s.contains(r#"points="0,23 1,12 2,1""#), "{s}");
        assert!(s.contains("<title>beats</title>"), "{s}");
        assert!(sparkline("none", &[]).into_string().contains("<svg"));
    }

    #[test]
    fn a_bar_turns_caution_at_80_and_bad_at_the_limit() {
        let class = |u, l| bar("q", u, l, html! {}).into_string();
        assert!(class(79, 100).contains("bar good"));
        assert!(class(80, 100).contains("bar warn"));
        assert!(class(100, 100).contains("bar bad"));
        assert!(class(0, 0).contains("bar info"));
        assert!(class(5, 0).contains("bar bad"));
        assert!(class(80, 100).contains(r#"low="80" high="90""#));
    }
}
