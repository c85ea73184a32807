use super::*;
use serde_json::json;

fn parsed(v: Value) -> (Value, Result<Request, WireError>) {
    parse(v.to_string().as_bytes())
}

fn error_message(v: Value) -> String {
    parsed(v).1.unwrap_err().message
}

#[test]
fn every_op_parses_with_its_arguments() {
    let (seq, r) = parsed(json!({"op": "find_token_by_id", "seq": {"any": [1]}, "token_id": "7"}));
    assert_eq!(seq, json!({"any": [1]}));
    assert_eq!(
        r.unwrap(),
        Request::FindTokenById {
            token_id: "7".into(),
            peek: false,
        }
    );
    assert_eq!(
        parsed(json!({"op": "find_token_by_id", "token_id": "7", "peek": true}))
            .1
            .unwrap(),
        Request::FindTokenById {
            token_id: "7".into(),
            peek: true,
        }
    );
    assert!(
        parsed(json!({"op": "find_token_by_id", "token_id": "7", "peek": 1}))
            .1
            .is_err()
    );
    assert_eq!(
        parsed(json!({"op": "get_tokens", "limit": 5, "after": "3"}))
            .1
            .unwrap(),
        Request::GetTokens {
            limit: 5,
            after: Some("3".into())
        }
    );
    assert_eq!(
        parsed(json!({"op": "get_tokens"})).1.unwrap(),
        Request::GetTokens {
            limit: MAX_PAGE,
            after: None
        },
        "no `limit` is a page of the most one reply carries"
    );
    assert_eq!(
        parsed(json!({"op": "get_tokens", "limit": MAX_PAGE + 1}))
            .1
            .unwrap(),
        Request::GetTokens {
            limit: MAX_PAGE,
            after: None
        },
        "a larger `limit` is clamped, not refused"
    );
    assert_eq!(
        parsed(json!({"op": "delete_tokens"})).1.unwrap(),
        Request::DeleteTokens
    );
    assert_eq!(parsed(json!({"op": "ping"})).1.unwrap(), Request::Ping);
    assert!(matches!(
        parsed(json!({"op": "save_token", "token": {"user_name": "u"}})).1,
        Ok(Request::SaveToken { .. })
    ));
}

#[test]
fn token_fields_accept_strings_null_and_integer_expiry() {
    let t = token(json!({"id": "1", "user_name": "", "access_token": null, "expiry_time": 1795330406683u64, "meta": {"x": 1}}))
        .unwrap();
    assert_eq!(t.id.as_deref(), Some("1"));
    assert_eq!(t.user_name, None, "empty string means null");
    assert_eq!(t.expiry_time.as_deref(), Some("1795330406683"));
}

#[test]
fn errors_name_the_problem() {
    assert_eq!(error_message(json!({"seq": 1})), "missing `op`");
    assert_eq!(error_message(json!({"op": "fly"})), "unknown op `fly`");
    assert_eq!(
        error_message(json!({"op": "find_token_by_id"})),
        "missing `token_id`"
    );
    assert_eq!(
        error_message(json!({"op": "find_token_by_id", "token_id": 5})),
        "`token_id` must be a string"
    );
    assert_eq!(
        error_message(json!({"op": "ping", "extra": 1})),
        "unknown argument `extra` for op `ping`"
    );
    assert_eq!(
        error_message(json!({"op": "save_token", "token": {"colour": "red"}})),
        "unknown token field `colour`"
    );
    assert!(error_message(json!({"op": "get_tokens", "limit": -1})).contains("`limit`"));
    for bad in [
        "soon",
        "+1795330406683",
        "9223372036854775808",
        "99999999999999999999",
    ] {
        assert!(
            error_message(json!({"op": "save_token", "token": {"expiry_time": bad}}))
                .contains("expiry_time"),
            "{bad}"
        );
    }
    assert!(parsed(
        json!({"op": "save_token", "token": {"refresh_token": "r", "expiry_time": "9223372036854775807"}})
    )
    .1
    .is_ok());
    assert_eq!(
        parse(b"[1]").1.unwrap_err().message,
        "a request must be a JSON object"
    );
    assert!(parse(b"{nope")
        .1
        .unwrap_err()
        .message
        .starts_with("not valid JSON"));
}

#[test]
fn a_bad_request_still_echoes_its_seq() {
    let (seq, r) = parsed(json!({"op": "fly", "seq": "s-1"}));
    assert_eq!(seq, json!("s-1"));
    assert!(r.is_err());
}

#[test]
fn error_messages_never_quote_a_value() {
    let secret = "SECRET-VALUE-123";
    let attempts = [
        json!({"op": "save_token", "token": {"refresh_token": [secret]}}),
        json!({"op": "save_token", "token": {"expiry_time": secret}}),
        json!({"op": "get_tokens", "limit": secret}),
        json!({"op": "find_token_by_id", "token_id": {"v": secret}}),
        json!({"op": "save_token", "token": secret}),
        json!(secret),
    ];
    for a in attempts {
        let message = error_message(a);
        assert!(!message.contains(secret), "{message}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(parse(deep.as_bytes()).1.is_err());
    let deep_obj = format!(
        "{{\"op\":\"ping\",\"seq\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse(deep_obj.as_bytes()).1.is_err());
}

#[test]
fn invalid_utf8_and_nul_are_bad_requests() {
    assert_eq!(
        parse(b"{\"op\":\"ping\xff\"}").1.unwrap_err().code,
        Code::BadRequest
    );
    assert_eq!(
        parse(b"{\"op\":\"ping\0\"}").1.unwrap_err().code,
        Code::BadRequest
    );
}

#[test]
fn replies_are_one_line_with_seq_ok_and_result_or_error() {
    let mut out = Vec::new();
    encode(&json!(9), &Ok(Answer::Deleted { deleted: true }), &mut out);
    encode(
        &Value::Null,
        &Err(WireError::new(Code::TooLarge, "big")),
        &mut out,
    );
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], r#"{"seq":9,"ok":true,"result":{"deleted":true}}"#);
    assert_eq!(
        lines[1],
        r#"{"seq":null,"ok":false,"error":{"code":"too_large","message":"big"}}"#
    );
}

#[test]
fn store_failures_do_not_leak_database_details() {
    let e = WireError::from(StoreError::Sqlite("disk I/O error at /secret/path".into()));
    assert_eq!(e.code, Code::StoreFailure);
    assert!(!e.message.contains("/secret/path"));
}

#[test]
fn a_found_token_from_the_cache_is_written_as_the_token_itself_would_be() {
    use crate::model::{Meta, StoredToken, Token};
    let token = StoredToken {
        token: Token {
            id: Some("7".into()),
            user_name: Some("a \"quoted\"\n\u{2028} name".into()),
            refresh_token: Some("SECRET-rt".into()),
            expiry_time: Some("1700000000000".into()),
            ..Token::default()
        },
        meta: Meta {
            last_used_at: Some(5),
            last_error: Some("invalid_code".into()),
            ..Meta::default()
        },
    };
    let json = TokenJson(serde_json::to_vec(&token).unwrap().into());
    for seq in [Value::Null, json!(3), json!("s"), json!({"any": [1, "x"]})] {
        let mut expected = Vec::new();
        let answer = Answer::Token {
            token: Some(token.clone()),
        };
        encode(&seq, &Ok(answer), &mut expected);
        let mut spliced = Vec::new();
        encode(&seq, &Ok(Answer::Found(json.clone())), &mut spliced);
        assert_eq!(
            String::from_utf8(spliced).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }
    let shown = format!("{:?}", Answer::Found(json));
    assert!(!shown.contains("SECRET"), "{shown}");
}
