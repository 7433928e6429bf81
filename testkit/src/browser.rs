//! A real Chromium, headless, driven over WebDriver through Debian's
//! `chromedriver` on a free loopback port. The client is the few W3C
//! WebDriver calls the suites need, spoken with the `reqwest` client every
//! suite already has (no second HTTP stack, no TLS: chromedriver is on
//! 127.0.0.1).
//!
//! Without `chromium` and `chromedriver` on PATH, [`Browser::start`] prints
//! one line saying how to get them and returns `None` (the test passes);
//! under `CI=true` that is a failure instead (see [`crate::skip`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{skip, wait_within, WAIT};

/// The line a suite prints when it cannot run a browser.
pub const BROWSER_SKIP: &str =
    "browser tests skipped: install chromium and chromium-driver (scripts/ci-browser)";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's flags: headless, nothing fetched in the background, a fresh
/// profile (added in [`Browser::start`]).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--window-size=1280,1800",
];

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// One request the browser started (see [`Browser::requests`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// The URL of the document it was made for.
    pub document: String,
    /// The URL requested.
    pub url: String,
    /// Why the browser stopped it before it left (`csp`, …), if it did.
    pub blocked: Option<String>,
}

/// A headless Chromium session; ends (browser and driver) on drop.
pub struct Browser {
    /// The chromedriver process.
    driver: Child,
    /// Where chromedriver listens.
    driver_addr: SocketAddr,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    /// The WebDriver client.
    http: reqwest::Client,
    /// The browser's empty profile folder, removed on drop.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session, or says why not and
    /// returns `None` (panics under `CI=true`).
    pub async fn start() -> Option<Browser> {
        let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
        let (Some(chromium), Some(driver)) = (chromium, on_path("chromedriver")) else {
            // One line per run, not per test; under CI=true every test fails.
            static SAID: std::sync::Once = std::sync::Once::new();
            if std::env::var("CI").as_deref() == Ok("true") {
                skip(BROWSER_SKIP);
            }
            SAID.call_once(|| skip(BROWSER_SKIP));
            return None;
        };
        Some(Self::launch(&chromium, &driver).await)
    }

    async fn launch(chromium: &Path, driver: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let driver_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let http = reqwest::Client::builder()
            .timeout(WAIT)
            .no_proxy()
            .build()
            .unwrap();
        let base = format!("http://{driver_addr}");
        wait_within("chromedriver to answer", WAIT, || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let r = http.get(url).send().await.ok()?;
                let v: Value = r.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
        }}});
        let mut browser = Browser {
            driver: child,
            driver_addr,
            session: String::new(),
            http,
            _profile: profile,
        };
        let v = browser.call("POST", &format!("{base}/session"), caps).await;
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not open a session: {v}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    async fn call(&self, method: &str, url: &str, body: Value) -> Value {
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {url}: {status} {v}"
        );
        v["value"].clone()
    }

    async fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("{}{path}", self.session), body)
            .await
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the
    /// page and returns what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Runs `script` asynchronously: it calls `arguments[0]` (the last
    /// argument WebDriver appends) with its result.
    pub async fn run_async(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/async",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// The element matching `css` (panics when there is none).
    async fn find(&self, css: &str) -> String {
        let v = self
            .session_call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// The visible text of the element matching `css`, read in one step
    /// (a live swap between finding and reading cannot make it stale).
    pub async fn text(&self, css: &str) -> String {
        let v = self
            .run(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                json!([css]),
            )
            .await;
        v.as_str()
            .unwrap_or_else(|| panic!("no element {css} on the page"))
            .to_string()
    }

    /// Types `text` into the element matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.session_call("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Chooses `file` in the file input matching `css`.
    pub async fn choose_file(&self, css: &str, file: &Path) {
        let id = self.find(css).await;
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": file.display().to_string() }),
        )
        .await;
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.session_call("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        let v = self.session_call("GET", "/url", Value::Null).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Polls `script` (returning a boolean) every 20 ms until it is true;
    /// panics naming `what` after `bound`.
    pub async fn wait_for(&self, what: &str, script: &str, bound: Duration) {
        wait_within(what, bound, || async {
            self.run(script, json!([])).await.as_bool().filter(|b| *b)
        })
        .await;
    }

    /// Waits (up to [`WAIT`]) until the page's URL contains `part`: a click
    /// that submits a form may return before the next page is there.
    pub async fn wait_for_url(&self, part: &str) {
        wait_within(&format!("a URL with {part}"), WAIT, || async {
            self.run("return location.href;", json!([]))
                .await
                .as_str()
                .filter(|u| u.contains(part))
                .map(str::to_string)
        })
        .await;
    }

    /// Every request the browser started since the last call, from
    /// Chromium's performance log (`Network.requestWillBeSent`, with
    /// `Network.loadingFailed` for the ones it blocked itself).
    pub async fn requests(&self) -> Vec<Request> {
        let entries = self
            .session_call("POST", "/se/log", json!({"type": "performance"}))
            .await;
        let events: Vec<Value> = entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
            .map(|m| m["message"].clone())
            .collect();
        let blocked = |id: &Value| {
            events.iter().find_map(|e| {
                let p = &e["params"];
                (e["method"] == "Network.loadingFailed" && &p["requestId"] == id)
                    .then(|| p["blockedReason"].as_str().map(str::to_string))
                    .flatten()
            })
        };
        events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| {
                let p = &e["params"];
                Some(Request {
                    document: p["documentURL"].as_str()?.to_string(),
                    url: p["request"]["url"].as_str()?.to_string(),
                    blocked: blocked(&p["requestId"]),
                })
            })
            .collect()
    }

    /// The browser console's messages since the last call (CSP violations
    /// land here).
    pub async fn console(&self) -> Vec<String> {
        let entries = self
            .session_call("POST", "/se/log", json!({"type": "browser"}))
            .await;
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    }

    /// Saves a PNG of the whole page, 1280 pixels wide (the window grown to
    /// its height).
    pub async fn screenshot(&self, path: &Path) {
        self.screenshot_at(path, 1280).await;
    }

    /// Keeps a screenshot of the page as `name`, `width` CSS pixels wide:
    /// under `target/ui-screenshots/`, and with `KACHING_SCREENSHOTS=docs`
    /// also under the workspace's `docs/img/` (the pictures the guides show).
    pub async fn keep_screenshot(&self, name: &str, width: u64) {
        let mut dirs = vec![crate::target_dir().join("ui-screenshots")];
        if std::env::var("KACHING_SCREENSHOTS").as_deref() == Ok("docs") {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/img"));
        }
        for d in dirs {
            self.screenshot_at(&d.join(name), width).await;
        }
    }

    /// [`Browser::screenshot`] at `width` CSS pixels (a phone: 390).
    pub async fn screenshot_at(&self, path: &Path, width: u64) {
        self.session_call(
            "POST",
            "/window/rect",
            json!({"width": width, "height": 1800}),
        )
        .await;
        let height = self
            .run("return document.body.scrollHeight + 24;", json!([]))
            .await
            .as_u64()
            .unwrap_or(1800)
            .clamp(400, 6000);
        self.session_call(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height + 140}),
        )
        .await;
        let v = self.session_call("GET", "/screenshot", Value::Null).await;
        let png = decode_base64(v.as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (Chromium exits) and the driver.
    pub async fn quit(mut self) {
        if !self.session.is_empty() {
            let _ = self.http.delete(&self.session).send().await;
            self.session.clear();
        }
    }
}

/// A page on another origin (another loopback port) that posts a form to
/// `action` as soon as it loads: the cross-site request forgery every web
/// page of KACHING must refuse. Stops when dropped.
pub struct HostileSite {
    /// Its port on 127.0.0.1 (browse `http://localhost:{port}/` for another
    /// site, `http://127.0.0.1:{port}/` for the same site on another origin).
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl HostileSite {
    /// Serves the self-submitting form with `fields` as its inputs.
    pub async fn posting(action: &str, fields: &[(&str, &str)]) -> HostileSite {
        let inputs: String = fields
            .iter()
            .map(|(k, v)| format!("<input name={k} value={v}>"))
            .collect();
        let html = format!(
            "<!doctype html><form id=f method=post action='{action}'>{inputs}</form>\
             <script>document.getElementById('f').submit()</script>"
        );
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
            html.len()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the hostile site");
        let port = listener.local_addr().expect("its address").port();
        let task = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        HostileSite { port, task }
    }
}

impl Drop for HostileSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked still ends its Chromium: a bare DELETE, since
        // nothing async runs in drop.
        if let Some(path) = self.session.split_once("/session/").map(|(_, id)| id) {
            if let Ok(mut s) = TcpStream::connect_timeout(&self.driver_addr, Duration::from_secs(2))
            {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.driver_addr
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (WebDriver screenshots), without a dependency.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::decode_base64("aGVsbG8="), b"hello");
        assert_eq!(super::decode_base64("aGk"), b"hi");
        assert_eq!(super::decode_base64(""), b"");
    }
}
