//! `publish`: upload the vendor directory's current revocation list to a
//! relay (`PUT /v1/revocations`, publish-scope token). The relay keeps only
//! a list signed by a vendor key it trusts with a higher version, and wakes
//! every connected verifier's long-poll the moment it commits one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kaching_core::wire::relay::{PublishAnswer, RootPublished, RootsAnswer};
use kaching_core::wire::ErrorBody;
use kaching_core::{verify_revocation_list, DocKind};

use super::Ctx;
use crate::cli::RelayArgs;
use crate::error::usage;
use crate::exit;
use crate::output::{note, out};
use crate::vendor_dir::{VendorDir, REVOCATIONS_FILE};

pub(super) fn publish(ctx: &Ctx<'_>, a: &RelayArgs) -> Result<u8> {
    let v = ctx.vendor()?;
    let (url, token_file, token) = relay_target(&v, a, "publish to")?;
    let path = v.path(REVOCATIONS_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {}: sign a revocation list first (suspend, revoke or `revocations refresh`)",
            path.display()
        )
    })?;
    // Never upload something the relay (or any verifier) would refuse anyway.
    let list = verify_revocation_list(&bytes, &v.trusted_keys()?).with_context(|| {
        format!(
            "{} does not verify with this vendor directory's keys: re-sign it with `licensegen revocations refresh`",
            path.display()
        )
    })?;
    let version = list.list.version;
    let endpoint = format!("{}/v1/revocations", url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(a.timeout.max(1)))
        .user_agent(concat!("licensegen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")?;
    // Roots first: with a root configured the relay judges the list by the
    // current root's revoker keys, so a rotation must arrive before a list
    // the new key signed.
    if let Some(code) = publish_roots(&client, &url, token.trim(), &v)? {
        return Ok(code);
    }
    let resp = match client
        .put(&endpoint)
        .bearer_auth(token.trim())
        .header(
            reqwest::header::CONTENT_TYPE,
            DocKind::RevocationList.content_type(),
        )
        .body(bytes)
        .send()
    {
        Ok(r) => r,
        Err(e) => {
            note(&format!(
                "error: cannot reach the relay at {url} ({e}): check the URL and that the relay is running, then publish again"
            ));
            return Ok(exit::RELAY_UNREACHABLE);
        }
    };
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    // A success is a PublishAnswer, a failure an ErrorBody (a proxy in
    // between may answer with anything: then the status says it).
    let answer = serde_json::from_str::<PublishAnswer>(&text).ok();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map(|e| e.error.message)
        .ok()
        .or_else(|| answer.as_ref().and_then(|a| a.message.clone()))
        .unwrap_or_default();
    let code = match status.as_u16() {
        200..=299 => {
            if answer.as_ref().is_some_and(|a| !a.accepted) {
                out(&format!(
                    "relay {url} already holds revocation list version {version}\n"
                ))?;
            } else {
                out(&format!(
                    "published revocation list version {version} to {url}; connected verifiers pick it up within seconds\n"
                ))?;
            }
            return Ok(exit::OK);
        }
        401 | 403 => {
            note(&format!(
                "error: the relay refused the token in {} ({status}: {message}): use a live publish-scope token (`kaching-relay token create --scope publish`)",
                token_file.display()
            ));
            exit::RELAY_TOKEN
        }
        409 => {
            note(&format!(
                "error: the relay refused version {version} ({message}): it already holds a newer or different list. Sign a newer one (`licensegen revocations refresh`) and publish again"
            ));
            exit::RELAY_REFUSED
        }
        422 => {
            note(&format!(
                "error: the relay refused the list ({message}): add this vendor's public key (`licensegen key export-public`) to the relay's vendor_keys"
            ));
            exit::RELAY_REFUSED
        }
        429 | 500..=599 => {
            note(&format!(
                "error: the relay at {url} is busy or failing ({status}: {message}): publish again shortly"
            ));
            exit::RELAY_UNREACHABLE
        }
        _ => {
            note(&format!(
                "error: the relay answered {status} ({message}): check --relay points at a kaching-relay"
            ));
            exit::FAILURE
        }
    };
    Ok(code)
}

/// Checks the relay base URL: http:// or https:// and a host, so that a
/// bare `host:port` gets a fix instead of the HTTP client's "builder error".
/// The relay URL, token file and token for `publish` and `usage pull`: the flags (or
/// their environment variables), else `[relay]` in kaching.toml. `what`
/// completes "no relay to …" in the error.
pub(super) fn relay_target(
    v: &VendorDir,
    a: &RelayArgs,
    what: &str,
) -> Result<(String, PathBuf, String)> {
    let settings = v.config.relay.clone().unwrap_or_default();
    let url = a
        .relay
        .clone()
        .or(settings.url)
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            usage(format!("no relay to {what}: pass --relay URL, set KACHING_RELAY_URL, or add `[relay] url = \"…\"` to kaching.toml"))
        })?;
    let url = relay_url(&url)?;
    let token_file = a
        .token_file
        .clone()
        .or_else(|| settings.token_file.map(|f| v.root.join(f)))
        .ok_or_else(|| {
            usage("no relay token: pass --token-file FILE (a publish-scope token from `kaching-relay token create --scope publish`), set KACHING_RELAY_TOKEN_FILE, or add `[relay] token_file` to kaching.toml")
        })?;
    let token = read_token(&token_file)?;
    Ok((url, token_file, token))
}

pub(super) fn relay_url(text: &str) -> Result<String> {
    let url = text.trim();
    let lower = url.to_ascii_lowercase();
    let fix = |why: String| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        usage(format!(
            "relay URL {url:?} {why}: a relay URL starts with http:// or https://: use http://{rest} (or https://{rest} when the relay has TLS)"
        ))
    };
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &url[s.len()..]))
    else {
        return Err(match url.split_once("://") {
            Some((scheme, _)) => fix(format!("uses {scheme}://")),
            None => fix("has no scheme".into()),
        });
    };
    if rest.is_empty() || rest.starts_with('/') || reqwest::Url::parse(url).is_err() {
        return Err(usage(format!(
            "relay URL {url:?} is not a valid URL: give the relay's address, e.g. https://relay.example.com or http://127.0.0.1:7879"
        )));
    }
    Ok(url.to_string())
}

pub(super) fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "cannot read relay token file {} ({e}): put a publish-scope token there (`kaching-relay token create --scope publish`)",
            path.display()
        ))
    })?;
    // Same rule as the daemons' token files: readable by every user is
    // worth a loud warning, not a refusal. A pipe (`<(pass show relay)`)
    // has no mode to check.
    if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        if let Ok(Some(warning)) = kaching_kit::secret::check_token(path, "relay token file") {
            eprintln!("warning: {warning}");
        }
    }
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(usage(format!(
            "relay token file {} is empty: put a publish-scope token there",
            path.display()
        )));
    }
    Ok(token)
}

/// Uploads the vendor's roots the relay does not hold yet, oldest first
/// (`PUT /v1/roots`). `Some(code)` ends the publish with that exit code.
fn publish_roots(
    client: &reqwest::blocking::Client,
    url: &str,
    token: &str,
    v: &VendorDir,
) -> Result<Option<u8>> {
    let Some(chain) = v.root_chain()? else {
        return Ok(None);
    };
    let base = url.trim_end_matches('/');
    let held = match client
        .get(format!("{base}/v1/roots"))
        .query(&[("after", "0")])
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json::<RootsAnswer>())
    {
        Ok(a) => a.latest,
        // An older relay without roots: say so, and publish the list alone.
        Err(e) => {
            note(&format!(
                "warning: the relay at {url} does not serve roots ({e}); publishing the revocation list only"
            ));
            return Ok(None);
        }
    };
    for root in chain.walked().iter().filter(|r| r.root.version > held) {
        let version = root.root.version;
        let resp = match client
            .put(format!("{base}/v1/roots"))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, DocKind::Root.content_type())
            .body(root.bytes.clone())
            .send()
        {
            Ok(r) => r,
            Err(e) => {
                note(&format!(
                    "error: cannot reach the relay at {url} ({e}): check the URL and that the relay is running, then publish again"
                ));
                return Ok(Some(exit::RELAY_UNREACHABLE));
            }
        };
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if status.is_success() {
            let accepted = serde_json::from_str::<RootPublished>(&text).is_ok_and(|a| a.accepted);
            if accepted {
                out(&format!("published root v{version} to {url}\n"))?;
            }
            continue;
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|e| e.to_string())
            .unwrap_or(text);
        if status.as_u16() == 409 {
            note(&format!(
                "warning: the relay at {url} has no root of trust configured ({message}); \
                 set `root` in its config to root v1 (`licensegen root show --out FILE`) so it can serve rotations"
            ));
            return Ok(None);
        }
        note(&format!(
            "error: the relay refused root v{version} ({status}: {message})"
        ));
        return Ok(Some(if matches!(status.as_u16(), 401 | 403) {
            exit::RELAY_TOKEN
        } else {
            exit::RELAY_REFUSED
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_url_needs_http_or_https() {
        assert_eq!(
            relay_url(" https://relay.example.com/ ").unwrap(),
            "https://relay.example.com/"
        );
        assert_eq!(
            relay_url("HTTP://127.0.0.1:7879").unwrap(),
            "HTTP://127.0.0.1:7879"
        );
        assert_eq!(
            relay_url("127.0.0.1:7879").unwrap_err().to_string(),
            "relay URL \"127.0.0.1:7879\" has no scheme: a relay URL starts with http:// or https://: use http://127.0.0.1:7879 (or https://127.0.0.1:7879 when the relay has TLS)"
        );
        assert!(relay_url("ftp://relay.example.com")
            .unwrap_err()
            .to_string()
            .starts_with("relay URL \"ftp://relay.example.com\" uses ftp://: a relay URL starts with http:// or https://: use http://relay.example.com"));
        assert!(relay_url("http://")
            .unwrap_err()
            .to_string()
            .contains("is not a valid URL"));
    }
}
