//! A JSON client for one daemon: every call answers (status, body).
//!
//! Two flavours: the `Value` helpers ([`Json::get`], …) for bodies no wire
//! type covers, and the typed ones ([`Json::get_as`], …) that deserialize
//! the answer into the shared wire type the caller names and panic with the
//! status code and the raw body when it does not fit, so a shape drift
//! fails loudly instead of reading as `null`.

use serde::de::DeserializeOwned;
use serde::Serialize;
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

    /// The HTTP client itself (shared, not copied, by clones), for requests
    /// built by hand.
    pub fn client(&self) -> &reqwest::Client {
        &self.http
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

    /// Sends `req` (described as `what`, e.g. `GET /v1/status`); status code
    /// and the body deserialized as `T`. Panics with the code and the raw
    /// body when the body is not a `T`.
    pub async fn send_as<T: DeserializeOwned>(
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, T) {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let code = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: answered {code}, body unreadable: {e}"));
        (code, decode(&format!("{what} (answered {code})"), &body))
    }

    /// `GET path`, the body read as `T` (panics with the body when it is not one).
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> (u16, T) {
        Self::send_as(
            &format!("GET {path}"),
            self.request(reqwest::Method::GET, path),
        )
        .await
    }

    /// `POST path` with a JSON body, the answer read as `T` (panics with the
    /// body when it is not one).
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> (u16, T) {
        Self::send_as(
            &format!("POST {path}"),
            self.request(reqwest::Method::POST, path).json(body),
        )
        .await
    }

    /// `PUT path` without a body, the answer read as `T` (panics with the
    /// body when it is not one).
    pub async fn put_as<T: DeserializeOwned>(&self, path: &str) -> (u16, T) {
        Self::send_as(
            &format!("PUT {path}"),
            self.request(reqwest::Method::PUT, path),
        )
        .await
    }

    /// `DELETE path`, the answer read as `T` (panics with the body when it
    /// is not one).
    pub async fn delete_as<T: DeserializeOwned>(&self, path: &str) -> (u16, T) {
        Self::send_as(
            &format!("DELETE {path}"),
            self.request(reqwest::Method::DELETE, path),
        )
        .await
    }

    /// True once `GET /healthz` answers at all.
    pub async fn answers(&self) -> bool {
        self.http.get(self.url("/healthz")).send().await.is_ok()
    }
}

/// `body` (JSON text) deserialized as `T`; panics naming `what`, the
/// expected type and showing the raw body when it is not one.
pub fn decode<T: DeserializeOwned>(what: &str, body: &str) -> T {
    serde_json::from_str(body).unwrap_or_else(|e| {
        panic!(
            "{what}: the body is not a {}: {e}\nbody: {body}",
            std::any::type_name::<T>()
        )
    })
}

/// `value` deserialized as `T`; panics naming `what`, the expected type and
/// showing the value when it is not one.
pub fn decode_value<T: DeserializeOwned>(what: &str, value: &Value) -> T {
    T::deserialize(value).unwrap_or_else(|e| {
        panic!(
            "{what}: the JSON is not a {}: {e}\njson: {value:#}",
            std::any::type_name::<T>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Answer {
        code: String,
    }

    #[test]
    fn a_fitting_body_is_read_as_the_type() {
        let a: Answer = decode("GET /x", r#"{"code": "ok", "more": 1}"#);
        assert_eq!(a, Answer { code: "ok".into() });
        let a: Answer = decode_value("event", &serde_json::json!({"code": "ok"}));
        assert_eq!(a.code, "ok");
    }

    #[test]
    #[should_panic(expected = "body: {\"error\":{\"code\":\"nope\"}}")]
    fn a_body_of_another_shape_panics_showing_the_body() {
        let _: Answer = decode("GET /x (answered 404)", r#"{"error":{"code":"nope"}}"#);
    }
}
