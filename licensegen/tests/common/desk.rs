//! A running `licensegen ui` (the real binary) and a small HTTP client for it
//! that keeps the session cookie by hand.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use reqwest::blocking::Client;
use reqwest::redirect::Policy;

use super::common::{Env, PASS};

/// `licensegen ui --no-open --listen 127.0.0.1:0` over `env`'s vendor directory.
pub struct Desk {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// The one-time link it printed.
    pub link: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A client that follows no redirects.
    pub http: Client,
}

impl Desk {
    /// Starts the desk; with `env_passphrase` the key is unlocked at start
    /// from `KACHING_PASSPHRASE`, as for any command.
    pub fn start(env: &Env, env_passphrase: bool) -> Desk {
        let mut c = Command::new(env!("CARGO_BIN_EXE_licensegen"));
        c.args(["ui", "--no-open", "--listen", "127.0.0.1:0"])
            .current_dir(env.tmp.path())
            .env("KACHING_DIR", &env.dir)
            .env("KACHING_TEST_SCRYPT_LOG_N", "4")
            .env_remove("KACHING_PASSPHRASE")
            .env_remove("KACHING_IDENTITY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if env_passphrase {
            c.env("KACHING_PASSPHRASE", PASS);
        }
        let mut child = c.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut link = String::new();
        for _ in 0..5 {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(l) = line.trim().strip_prefix("open ") {
                link = l.to_string();
                break;
            }
        }
        assert!(
            link.starts_with("http://127.0.0.1:"),
            "no link printed: {link:?}"
        );
        let base = link.split("/desk/").next().unwrap().to_string();
        let http = Client::builder()
            .redirect(Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        Desk {
            child,
            _stdout: out,
            link,
            base,
            http,
        }
    }

    /// Opens the link; returns the session cookie (`name=value`).
    pub fn sign_in(&self) -> String {
        let r = self.http.get(&self.link).send().unwrap();
        assert_eq!(r.status(), 303);
        let c = r.headers()["set-cookie"].to_str().unwrap();
        c.split(';').next().unwrap().to_string()
    }

    /// GET `path` with `cookie`: status and body.
    pub fn get(&self, path: &str, cookie: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// GET `path`'s raw bytes.
    pub fn bytes(&self, path: &str, cookie: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    }

    /// POSTs a form as the desk's own page does (its Origin): status,
    /// `Location` and body.
    pub fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        self.post_from(path, cookie, Some(&self.base), form)
    }

    /// POSTs a form with this `Origin` (or none).
    pub fn post_from(
        &self,
        path: &str,
        cookie: &str,
        origin: Option<&str>,
        form: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().unwrap();
        let loc = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), loc, r.text().unwrap())
    }

    /// The anti-forgery token of the desk (read from its ledger page).
    pub fn csrf(&self, cookie: &str) -> String {
        let (_, body) = self.get("/desk/", cookie);
        let at = body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a token")
            + 19;
        body[at..].split('"').next().unwrap().to_string()
    }

    /// Posts a license page's change form (`action` and its fields) with
    /// the anti-forgery token `csrf`: status, `Location` and body.
    pub fn change(
        &self,
        cookie: &str,
        csrf: &str,
        id: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut form = vec![("csrf", csrf)];
        form.extend_from_slice(fields);
        self.post(&format!("/desk/license/{id}/change"), cookie, &form)
    }

    /// Unlocks the vendor key through the form.
    pub fn unlock(&self, cookie: &str) {
        let csrf = self.csrf(cookie);
        let (s, loc, body) = self.post(
            "/desk/unlock",
            cookie,
            &[("csrf", &csrf), ("passphrase", PASS), ("back", "/desk/")],
        );
        assert_eq!((s, loc.as_str()), (303, "/desk/"), "{body}");
    }
}

impl Desk {
    /// Sends Ctrl-C (SIGINT) and waits: exit code and what it said on stderr.
    pub fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the desk did not stop on Ctrl-C"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status.code(), err)
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
