//! Checks that an OpenAPI document matches the router it describes: the
//! router cannot be enumerated at run time, so its `.route(…)` calls are
//! read from the source file that builds it.

use std::collections::BTreeSet;

use serde_json::Value;

/// `(METHOD, path)` of every operation in an OpenAPI document.
pub fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The text inside the parentheses that open at `open` (an index of `(`).
fn group(text: &str, open: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses after byte {open}")
}

/// `(METHOD, path)` of every `.route(PATH, get(…).post(…))` in `source`,
/// the router-building code. A path named by a constant is looked up in
/// `consts` (`("ACTIVATE", "/v1/activate")`).
pub fn routes_in_source(source: &str, consts: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (at, _) in source.match_indices(".route(") {
        let args = group(source, at + ".route".len());
        let (path, handlers) = args.split_once(',').expect("route(path, handler)");
        let path = path.trim();
        let path = match path.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(p) => p.to_string(),
            None => consts
                .iter()
                .find(|(name, _)| *name == path)
                .map(|(_, value)| value.to_string())
                .unwrap_or_else(|| panic!("route path {path} is neither a literal nor in consts")),
        };
        for m in ["get", "put", "post", "delete", "patch", "head", "options"] {
            let called = handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                let before = handlers[..i].chars().next_back();
                // `get(`, `.get(`, `routing::get(`, not `forget(` or `budget(`.
                before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            });
            if called {
                routes.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Panics unless `doc` is an OpenAPI 3.1 document whose `$ref`s all
/// resolve and whose operations are exactly the routes that the
/// router-building `source` declares (see [`routes_in_source`]).
pub fn assert_document_matches_router(doc: &Value, source: &str, consts: &[(&str, &str)]) {
    assert_eq!(doc["openapi"], "3.1.0");
    assert_refs_resolve(doc);
    let routed = routes_in_source(source, consts);
    assert!(!routed.is_empty(), "no .route( calls in the source");
    assert_eq!(
        routed,
        documented_operations(doc),
        "router (left) vs document (right)"
    );
}

/// Panics unless every `$ref` in the document names a schema, response or
/// security scheme it defines.
pub fn assert_refs_resolve(doc: &Value) {
    fn walk(v: &Value, doc: &Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("local $ref");
                    assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
                }
                map.values().for_each(|v| walk(v, doc));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, doc)),
            _ => {}
        }
    }
    walk(doc, doc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_with_their_methods_and_constants() {
        let src = r#"
            Router::new()
                .route("/a", get(h).post(x::h))
                .route(ACTIVATE, axum::routing::post(activate))
                .route("/b/{id}", put(lease).delete(release))
                .route_layer(auth)
                .route("/c", get(|| async { forget(1) }))
        "#;
        let got = routes_in_source(src, &[("ACTIVATE", "/v1/activate")]);
        let want: BTreeSet<_> = [
            ("GET", "/a"),
            ("POST", "/a"),
            ("POST", "/v1/activate"),
            ("PUT", "/b/{id}"),
            ("DELETE", "/b/{id}"),
            ("GET", "/c"),
        ]
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
