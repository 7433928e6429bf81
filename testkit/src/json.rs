//! A JSON client for one daemon: every call answers (status, body).

use serde_json::Value;

/// Talks JSON to `base` (`http://127.0.0.1:PORT`), optionally with a bearer token.
#[derive(Debug, Clone)]
pub struct Json {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
    http: reqwest::Client,
}

impl Json {
    /// A client for `base` without a token.
    pub fn new(base: impl Into<String>) -> Json {
        Json {
            base: base.into(),
            token: None,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// The same client sending `token`.
    pub fn with_token(&self, token: impl Into<String>) -> Json {
        Json {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request builder with the token applied, for anything the helpers below do not cover.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `req`; status code and JSON body (`Null` when the body is not JSON).
    pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// `PUT path` without a body.
    pub async fn put(&self, path: &str) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::PUT, path)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// True once `GET /healthz` answers at all.
    pub async fn answers(&self) -> bool {
        self.http.get(self.url("/healthz")).send().await.is_ok()
    }
}
