//! An annotated hex dump of a KACHING document: every CBOR head and value on
//! its own line with its offset and meaning. Written from the raw bytes (not
//! from a decoded value) so that the dump shows exactly what is on disk.
//! Used by the `annotate` example and by the test that keeps docs/format.md
//! in step with the fixtures.

use kaching_core::time::rfc3339;

/// Where in a document the walker is, to name labels and values.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// Outside the COSE_Sign1.
    Top,
    /// The four-element COSE_Sign1 array.
    Sign1,
    /// A COSE header map.
    Header,
    /// The claims map (and maps inside it).
    Claims,
}

enum Key {
    Int(i64),
    Text(String),
    Other,
}

struct Dump<'a> {
    b: &'a [u8],
    lines: Vec<String>,
}

const HEX_COLS: usize = 16;

impl Dump<'_> {
    fn line(&mut self, offset: usize, bytes: &[u8], depth: usize, text: &str) {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let line = format!(
            "{offset:04x}  {:<48} {}{text}",
            hex.join(" "),
            "  ".repeat(depth)
        );
        self.lines.push(line.trim_end().to_string());
    }

    /// Prints a string's content bytes, 16 per line.
    fn content(&mut self, start: usize, len: usize, depth: usize, first: &str) {
        let end = start + len;
        let mut text = first;
        for at in (start..end).step_by(HEX_COLS) {
            let next = (at + HEX_COLS).min(end);
            self.line(at, &self.b[at..next], depth, text);
            text = "";
        }
    }

    /// Reads a CBOR head: (major type, argument, head length).
    fn head(&self, pos: usize) -> Option<(u8, u64, usize)> {
        let first = *self.b.get(pos)?;
        let (major, info) = (first >> 5, first & 0x1f);
        let (arg, len) = match info {
            0..=23 => (u64::from(info), 1),
            24..=27 => {
                let n = 1usize << (info - 24);
                let bytes = self.b.get(pos + 1..pos + 1 + n)?;
                (
                    bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)),
                    1 + n,
                )
            }
            31 => (u64::MAX, 1), // indefinite length
            _ => return None,
        };
        Some((major, arg, len))
    }

    fn key_at(&self, pos: usize) -> Key {
        match self.head(pos) {
            Some((0, n, _)) => i64::try_from(n).map_or(Key::Other, Key::Int),
            Some((1, n, _)) => i64::try_from(n).map_or(Key::Other, |n| Key::Int(-1 - n)),
            Some((3, n, h)) => self
                .b
                .get(pos + h..pos + h + n as usize)
                .and_then(|t| std::str::from_utf8(t).ok())
                .map_or(Key::Other, |t| Key::Text(t.to_string())),
            _ => Key::Other,
        }
    }

    /// Walks one item; returns the offset after it.
    fn item(&mut self, pos: usize, depth: usize, ctx: Ctx, note: &str) -> Option<usize> {
        let (major, arg, h) = self.head(pos)?;
        let head = &self.b[pos..pos + h];
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(" — {note}")
        };
        match major {
            0 => {
                self.line(pos, head, depth, &format!("unsigned({arg}){note}"));
                Some(pos + h)
            }
            1 => {
                let v = -1 - i128::from(arg);
                self.line(pos, head, depth, &format!("negative({v}){note}"));
                Some(pos + h)
            }
            2 => {
                let len = usize::try_from(arg).ok()?;
                let start = pos + h;
                let nested = match (ctx, note.as_str()) {
                    (Ctx::Sign1, n) if n.contains("protected header") => Some(Ctx::Header),
                    (Ctx::Sign1, n) if n.contains("payload") => Some(Ctx::Claims),
                    _ => None,
                };
                match nested {
                    Some(inner) if len > 0 => {
                        self.line(pos, head, depth, &format!("bytes({len}){note}, holding:"));
                        let end = self.item(start, depth + 1, inner, "")?;
                        (end == start + len).then_some(end)
                    }
                    _ => {
                        self.line(pos, head, depth, &format!("bytes({len}){note}"));
                        if len > 0 {
                            self.content(start, len, depth + 1, "");
                        }
                        Some(start + len)
                    }
                }
            }
            3 => {
                let len = usize::try_from(arg).ok()?;
                let start = pos + h;
                let text = std::str::from_utf8(self.b.get(start..start + len)?).ok()?;
                let mut bytes = head.to_vec();
                bytes.extend_from_slice(&self.b[start..start + len.min(HEX_COLS - h)]);
                let shown = if text.chars().count() > 60 {
                    format!("{}…", text.chars().take(57).collect::<String>())
                } else {
                    text.to_string()
                };
                self.line(pos, &bytes, depth, &format!("text({len}) {shown:?}{note}"));
                let first = len.min(HEX_COLS - h);
                if len > first {
                    self.content(start + first, len - first, depth, "");
                }
                Some(start + len)
            }
            4 => {
                let n = usize::try_from(arg).ok()?;
                self.line(pos, head, depth, &format!("array({n}){note}"));
                let mut at = pos + h;
                for i in 0..n {
                    let (inner, what) = if ctx == Ctx::Sign1 {
                        (Ctx::Sign1, sign1_part(i))
                    } else {
                        (ctx, "")
                    };
                    at = self.item(at, depth + 1, inner, what)?;
                }
                Some(at)
            }
            5 => {
                let n = usize::try_from(arg).ok()?;
                self.line(pos, head, depth, &format!("map({n}){note}"));
                let inner = if ctx == Ctx::Sign1 { Ctx::Header } else { ctx };
                let mut at = pos + h;
                for _ in 0..n {
                    let key = self.key_at(at);
                    let (kname, vname) = names(inner, &key);
                    at = self.item(at, depth + 1, inner, &kname)?;
                    let vname = value_note(&vname, self.head(at), &key);
                    at = self.item(at, depth + 2, inner, &vname)?;
                }
                Some(at)
            }
            6 => {
                let what = if arg == 18 { "COSE_Sign1" } else { "" };
                self.line(pos, head, depth, &format!("tag({arg}) {what}{note}"));
                self.item(pos + h, depth + 1, Ctx::Sign1, "")
            }
            _ => {
                let v = match arg {
                    20 => "false",
                    21 => "true",
                    22 => "null",
                    _ => "simple",
                };
                self.line(pos, head, depth, &format!("{v}{note}"));
                Some(pos + h)
            }
        }
    }
}

fn sign1_part(i: usize) -> &'static str {
    match i {
        0 => "protected header (a bstr-wrapped map; signed)",
        1 => "unprotected header (must be empty)",
        2 => "payload (a bstr-wrapped claims map; signed)",
        _ => "signature: Ed25519 over the Sig_structure (R ‖ S)",
    }
}

/// Names a map key and says what its value is, from the context.
fn names(ctx: Ctx, key: &Key) -> (String, String) {
    let (k, v): (&str, &str) = match (ctx, key) {
        (Ctx::Header, Key::Int(1)) => ("label 1: alg", "algorithm"),
        (Ctx::Header, Key::Int(3)) => ("label 3: content type", "document kind"),
        (Ctx::Header, Key::Int(4)) => ("label 4: kid", "first 8 bytes of SHA-256(raw public key)"),
        (Ctx::Header, Key::Text(t)) if t == "kaching-signer" => (
            "label \"kaching-signer\"",
            "the signer's raw 32-byte Ed25519 public key",
        ),
        (Ctx::Claims, Key::Int(1)) => ("claim 1: iss", "issuer"),
        (Ctx::Claims, Key::Int(2)) => ("claim 2: sub", "customer id"),
        (Ctx::Claims, Key::Int(3)) => ("claim 3: aud", "product"),
        (Ctx::Claims, Key::Int(4)) => ("claim 4: exp", "time"),
        (Ctx::Claims, Key::Int(5)) => ("claim 5: nbf", "time"),
        (Ctx::Claims, Key::Int(6)) => ("claim 6: iat", "time"),
        (Ctx::Claims, Key::Int(7)) => ("claim 7: cti", "license id"),
        (_, Key::Text(t)) => match t.as_str() {
            "expires" | "time" | "period_start" => ("", "time"),
            "grace" | "interval" | "offline_grace" => ("", "seconds"),
            "supersedes" | "license" | "id" => ("", "license id"),
            _ => ("", ""),
        },
        _ => ("", ""),
    };
    (k.to_string(), v.to_string())
}

fn value_note(what: &str, head: Option<(u8, u64, usize)>, key: &Key) -> String {
    match (what, head) {
        ("time", Some((0, t, _))) => rfc3339(t),
        ("seconds", Some((0, s, _))) => kaching_core::time::human_duration(s),
        ("algorithm", Some((1, 7, _))) => "-8 = EdDSA".into(),
        ("algorithm", Some((1, 18, _))) => "-19 = Ed25519 (vendor setting)".into(),
        ("license id", _) => "license id (16 bytes, shown as a UUID)".into(),
        _ if matches!(key, Key::Other) => String::new(),
        _ => what.to_string(),
    }
}

/// The annotated dump of a binary document, one line per CBOR item.
pub fn annotate(bytes: &[u8]) -> Result<String, String> {
    let mut d = Dump {
        b: bytes,
        lines: Vec::new(),
    };
    let end = d
        .item(0, 0, Ctx::Top, "")
        .ok_or("not well-formed CBOR (or a construct this dump does not show)")?;
    if end != bytes.len() {
        return Err(format!("{} bytes after the document", bytes.len() - end));
    }
    let mut out = String::from("offset bytes                                            meaning\n");
    for l in d.lines {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}
