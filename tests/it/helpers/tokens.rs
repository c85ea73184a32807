//! Test tokens, and checks of replies and of the tokens they carry.

use serde_json::{json, Map, Value};

/// The ten fields of a token record, in the SDK's order.
pub const FIELDS: [&str; 10] = [
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
];
/// Checks a reply has the shape protocol v1 promises: `seq`, `ok`, and `result` or a
/// string `error.code` and `error.message`.
pub fn check_reply_shape(reply: &Value) {
    let object = reply
        .as_object()
        .unwrap_or_else(|| panic!("reply is not an object: {reply}"));
    assert!(object.contains_key("seq"), "reply has no seq: {reply}");
    match object.get("ok") {
        Some(Value::Bool(true)) => {
            assert!(
                object.contains_key("result"),
                "success without result: {reply}"
            );
            assert!(
                !object.contains_key("error"),
                "success with an error: {reply}"
            );
        }
        Some(Value::Bool(false)) => {
            assert!(
                reply["error"]["code"].is_string(),
                "error without code: {reply}"
            );
            assert!(
                reply["error"]["message"].is_string(),
                "error without message: {reply}"
            );
            assert!(
                !object.contains_key("result"),
                "failure with a result: {reply}"
            );
        }
        _ => panic!("reply has no boolean `ok`: {reply}"),
    }
}

/// A failed reply's code and message.
pub fn error_of(reply: &Value) -> (String, String) {
    assert_eq!(reply["ok"], false, "expected a failure: {reply}");
    (
        reply["error"]["code"]
            .as_str()
            .expect("error code")
            .to_owned(),
        reply["error"]["message"]
            .as_str()
            .expect("error message")
            .to_owned(),
    )
}

/// A token's ten fields, with absent ones as null and `meta` left out.
pub fn fields(token: &Value) -> Value {
    assert!(token.is_object(), "not a token: {token}");
    let mut out = Map::new();
    for field in FIELDS {
        out.insert(
            field.to_owned(),
            token.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

/// The id of a stored token.
pub fn id_of(token: &Value) -> String {
    token["id"]
        .as_str()
        .unwrap_or_else(|| panic!("token without a string id: {token}"))
        .to_owned()
}

/// Asserts that `stored` holds every non-null field of `expected` verbatim.
pub fn assert_has(stored: &Value, expected: &Value) {
    assert!(
        stored.is_object(),
        "expected a token like {expected}, got {stored}"
    );
    for (k, v) in expected.as_object().expect("expected fields are an object") {
        if !v.is_null() {
            assert_eq!(&stored[k], v, "field `{k}` of {stored}");
        }
    }
}

/// A complete, distinct token for user `n` of a test (`tag` keeps tests' values apart).
pub fn token(tag: &str, n: usize) -> Value {
    json!({
        "user_name": format!("{tag}-user-{n}@example.com:2006{n}"),
        "client_id": format!("1000.{tag}CLIENT{n}"),
        "client_secret": format!("{tag}-client-secret-{n}"),
        "refresh_token": format!("1000.{tag}.refresh.{n}"),
        "access_token": format!("1000.{tag}.access.{n}"),
        "expiry_time": format!("{}", 1_795_330_406_683_u64 + n as u64),
        "redirect_url": format!("https://example.com/{tag}/callback"),
        "api_domain": "https://www.zohoapis.com",
    })
}
