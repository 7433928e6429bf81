//! The armored text spelling of a document, for e-mail and copy-paste:
//! `-----BEGIN KACHING LICENSE-----`, base64 in 64-column lines, `-----END …`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::doc_kind::{DocKind, MAX_DOCUMENT_SIZE};
use crate::error::{Error, Result};

/// Width of base64 lines in armored output.
const LINE: usize = 64;

/// Wraps binary document bytes in armor with the kind's label.
pub fn armor(kind: DocKind, bytes: &[u8]) -> String {
    let b64 = STANDARD.encode(bytes);
    let label = kind.armor_label();
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE + 2 * label.len() + 32);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(LINE) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// True when the input looks like armored text rather than binary CBOR.
pub fn is_armored(input: &[u8]) -> bool {
    let trimmed = input.trim_ascii_start();
    trimmed.starts_with(b"-----BEGIN ")
}

/// Returns the binary document from either spelling, checking the size limit
/// before looking at anything else. For armored input the label must name
/// `expected` (or any KACHING kind when `expected` is `None`).
pub fn dearmor(input: &[u8], expected: Option<DocKind>) -> Result<Vec<u8>> {
    if input.len() > MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            size: input.len(),
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    if !is_armored(input) {
        return Ok(input.to_vec());
    }
    let text = std::str::from_utf8(input).map_err(|_| Error::Armor("not UTF-8 text".into()))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let begin = lines.next().unwrap_or_default();
    let label = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| Error::Armor("first line is not a -----BEGIN …----- marker".into()))?;
    let end_marker = format!("-----END {label}-----");
    let mut body = String::with_capacity(text.len());
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end_marker {
            ended = true;
            break;
        }
        if line.starts_with("-----") {
            return Err(Error::Armor(format!("expected {end_marker}, found {line}")));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(Error::Armor(format!("missing {end_marker}")));
    }
    if lines.next().is_some() {
        return Err(Error::Armor("text after the END marker".into()));
    }
    match (DocKind::from_armor_label(label), expected) {
        (None, _) => {
            return Err(Error::Armor(format!("unknown label {label:?}")));
        }
        (Some(found), Some(want)) if found != want => {
            return Err(Error::ArmorLabel {
                found: label.to_string(),
                expected: want,
            })
        }
        _ => {}
    }
    STANDARD
        .decode(body.as_bytes())
        .map_err(|e| Error::Armor(format!("bad base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armor_round_trip_and_line_width() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = armor(DocKind::License, &data);
        assert!(text.starts_with("-----BEGIN KACHING LICENSE-----\n"));
        assert!(text
            .lines()
            .all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert_eq!(
            dearmor(text.as_bytes(), Some(DocKind::License)).ok(),
            Some(data)
        );
    }

    #[test]
    fn crlf_and_surrounding_whitespace_accepted() {
        let text = armor(DocKind::License, b"hello").replace('\n', "\r\n");
        let padded = format!("\n  {text}\n\n");
        assert_eq!(
            dearmor(padded.as_bytes(), None).ok(),
            Some(b"hello".to_vec())
        );
    }

    #[test]
    fn oversized_input_refused_before_parsing() {
        let big = vec![b'-'; MAX_DOCUMENT_SIZE + 1];
        assert!(matches!(dearmor(&big, None), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn wrong_label_refused() {
        let text = armor(DocKind::RevocationList, b"x");
        assert!(matches!(
            dearmor(text.as_bytes(), Some(DocKind::License)),
            Err(Error::ArmorLabel { .. })
        ));
    }

    #[test]
    fn truncated_armor_refused() {
        let text = armor(DocKind::License, b"hello");
        let cut = &text[..text.len() - 10];
        assert!(matches!(
            dearmor(cut.as_bytes(), None),
            Err(Error::Armor(_))
        ));
    }
}
