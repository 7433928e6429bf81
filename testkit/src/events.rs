//! A reader for server-sent events (`GET /v1/events`).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::json::decode_value;
use crate::{Json, WAIT};

/// An open server-sent event stream.
pub struct Events {
    /// The streaming response.
    resp: reqwest::Response,
    /// Bytes received but not yet split into events.
    buf: String,
}

impl Events {
    /// Subscribes to `path` (usually `/v1/events`); panics unless it answers 200.
    pub async fn open(json: &Json, path: &str) -> Events {
        let resp = json
            .request(reqwest::Method::GET, path)
            .timeout(WAIT * 10)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path} did not open a stream");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (name, JSON data), or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse(&frame) {
                    return Some(event);
                }
                continue; // a keep-alive comment
            }
            let chunk = self.resp.chunk().await.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads events until one named `kind` satisfies `ok`; panics after [`WAIT`].
    pub async fn wait_for(&mut self, kind: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(WAIT, async {
            while let Some((k, v)) = self.next().await {
                if k == kind && ok(&v) {
                    return Some(v);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(v)) => v,
            Ok(None) => panic!("event stream ended before a matching {kind} event"),
            Err(_) => panic!("no matching {kind} event within {WAIT:?}"),
        }
    }

    /// [`Events::wait_for`] with every `kind` event read as `T` (the wire
    /// type of that event); panics showing the data when one is not a `T`.
    pub async fn wait_for_as<T: DeserializeOwned>(
        &mut self,
        kind: &str,
        ok: impl Fn(&T) -> bool,
    ) -> T {
        let what = format!("a {kind} event");
        let v = self
            .wait_for(kind, |v| ok(&decode_value::<T>(&what, v)))
            .await;
        decode_value(&what, &v)
    }
}

/// One SSE frame → (event name, JSON data); `None` for a frame without data.
fn parse(frame: &str) -> Option<(String, Value)> {
    let mut kind = String::from("message");
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    if data.is_empty() {
        return None;
    }
    Some((kind, serde_json::from_str(&data).unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_named_and_keep_alives_skipped() {
        assert_eq!(
            parse("event: state\ndata: {\"state\":\"active\"}\n\n"),
            Some(("state".into(), serde_json::json!({"state": "active"})))
        );
        assert_eq!(parse(": keep-alive\n\n"), None);
        assert_eq!(
            parse("data: 1\n\n"),
            Some(("message".into(), serde_json::json!(1)))
        );
    }
}
