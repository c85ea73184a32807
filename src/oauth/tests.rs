//! The token-endpoint client against a real HTTP server on loopback (wiremock).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;

// Secrets contain characters that must be percent-encoded, to check the form's encoding.
const CLIENT_ID: &str = "1000.CLIENTID";
const CLIENT_SECRET: &str = "s3cret+/&=client sec";
const REFRESH_TOKEN: &str = "1000.refresh%TOKEN&x=y";
const ACCESS_TOKEN: &str = "1000.access.TOKEN.value";
const ROTATED_REFRESH: &str = "1000.rotated.REFRESH.value";
const GRANT_CODE: &str = "1000.grant.CODE.value";
const SECRETS: &[&str] = &[
    CLIENT_SECRET,
    REFRESH_TOKEN,
    ACCESS_TOKEN,
    ROTATED_REFRESH,
    GRANT_CODE,
];

fn client_with(endpoints: Endpoints, timeout: Duration) -> OAuthClient {
    OAuthClient::new(endpoints, Duration::from_secs(2), timeout).unwrap()
}

fn client(accounts: &str) -> OAuthClient {
    let endpoints = Endpoints {
        accounts_url: Some(accounts.to_owned()),
        ..Endpoints::default()
    };
    client_with(endpoints, Duration::from_secs(5))
}

fn refresh_request() -> RefreshRequest<'static> {
    RefreshRequest {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        refresh_token: REFRESH_TOKEN,
        api_domain: Some("https://crm.example.test"),
    }
}

fn code_request(redirect_uri: Option<&'static str>) -> CodeRequest<'static> {
    CodeRequest {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        code: GRANT_CODE,
        redirect_uri,
        api_domain: None,
    }
}

/// A server answering every POST to `path_` with `answer`.
async fn server_at(path_: &str, answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(path_))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

/// What a refresh against a server answering `answer` fails with, checked for secrets.
async fn refresh_error(answer: ResponseTemplate) -> OAuthError {
    let server = server_at("/oauth/v2/token", answer).await;
    let error = client(&server.uri())
        .refresh(&refresh_request())
        .await
        .unwrap_err();
    assert_no_secrets(&error);
    error
}

fn assert_no_secrets(error: &OAuthError) {
    let shown = format!("{error} {error:?} {}", error.code());
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{shown} contains a secret");
    }
}

fn transient_reason(error: OAuthError) -> String {
    match error {
        OAuthError::Transient { reason } => reason,
        other => panic!("expected Transient, got {other:?}"),
    }
}

/// An error body from a server that echoes the secrets back, as a hostile one might.
fn error_body(code: &str) -> serde_json::Value {
    let echo = format!("{CLIENT_SECRET} {REFRESH_TOKEN} {GRANT_CODE}");
    json!({"error": code, "error_description": echo, "status": "failure"})
}

/// The one request the server received, its form decoded; each field name at most once.
async fn form_sent(server: &MockServer) -> BTreeMap<String, String> {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request: &Request = &requests[0];
    assert_eq!(
        request.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let body = std::str::from_utf8(&request.body).unwrap();
    let pairs: Vec<_> = body
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    let form: BTreeMap<_, _> = pairs.iter().map(|(k, v)| (decode(k), decode(v))).collect();
    assert_eq!(form.len(), pairs.len(), "a field was sent twice: {body}");
    form
}

fn decode(s: &str) -> String {
    let (mut out, mut rest) = (Vec::new(), s.as_bytes());
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&rest[..2]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                rest = &rest[2..];
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).unwrap()
}

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn refresh_sends_exactly_the_form_and_returns_the_grant() {
    let answer = json!({"access_token": ACCESS_TOKEN, "api_domain": "https://www.zohoapis.eu",
        "token_type": "Bearer", "expires_in": 3600});
    let server = server_at(
        "/oauth/v2/token",
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;
    let grant = client(&server.uri())
        .refresh(&refresh_request())
        .await
        .unwrap();
    let expected = Grant {
        access_token: ACCESS_TOKEN.into(),
        refresh_token: None,
        expires_in: Duration::from_secs(3600),
        api_domain: Some("https://www.zohoapis.eu".into()),
    };
    assert_eq!(grant, expected);
    let sent = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", REFRESH_TOKEN),
    ]);
    assert_eq!(form_sent(&server).await, sent);
}

#[tokio::test]
async fn refresh_returns_a_rotated_refresh_token_and_tolerates_a_missing_api_domain() {
    let answer =
        json!({"access_token": ACCESS_TOKEN, "refresh_token": ROTATED_REFRESH, "expires_in": 3600});
    let server = server_at(
        "/oauth/v2/token",
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;
    let grant = client(&server.uri())
        .refresh(&refresh_request())
        .await
        .unwrap();
    assert_eq!(grant.refresh_token.as_deref(), Some(ROTATED_REFRESH));
    assert_eq!(grant.api_domain, None);
}

#[tokio::test]
async fn legacy_milliseconds_expires_in_uses_expires_in_sec() {
    let answer =
        json!({"access_token": ACCESS_TOKEN, "expires_in": 3_600_000, "expires_in_sec": 3600});
    let server = server_at(
        "/oauth/v2/token",
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;
    let grant = client(&server.uri())
        .refresh(&refresh_request())
        .await
        .unwrap();
    assert_eq!(grant.expires_in, Duration::from_secs(3600));
}

#[tokio::test]
async fn exchange_code_sends_the_code_and_redirect_uri() {
    let answer = json!({"access_token": ACCESS_TOKEN, "refresh_token": ROTATED_REFRESH,
        "api_domain": "https://www.zohoapis.com", "token_type": "Bearer", "expires_in": 3600});
    for redirect_uri in [Some("https://app.example/cb?a=1&b=2"), None] {
        let template = ResponseTemplate::new(200).set_body_json(&answer);
        let server = server_at("/oauth/v2/token", template).await;
        let grant = client(&server.uri())
            .exchange_code(&code_request(redirect_uri))
            .await
            .unwrap();
        assert_eq!(grant.refresh_token.as_deref(), Some(ROTATED_REFRESH));
        let mut sent = form(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code", GRANT_CODE),
        ]);
        sent.extend(redirect_uri.map(|uri| ("redirect_uri".to_owned(), uri.to_owned())));
        assert_eq!(form_sent(&server).await, sent);
    }
}

#[tokio::test]
async fn exchange_code_with_an_invalid_code_answered_with_200_is_permanent() {
    let template = ResponseTemplate::new(200).set_body_json(error_body("invalid_code"));
    let server = server_at("/oauth/v2/token", template).await;
    let error = client(&server.uri())
        .exchange_code(&code_request(None))
        .await
        .unwrap_err();
    assert_no_secrets(&error);
    assert_eq!(
        error,
        OAuthError::Permanent {
            code: "invalid_code".into()
        }
    );
}

#[tokio::test]
async fn revoke_succeeds_only_on_a_success_status() {
    let ok = ResponseTemplate::new(200).set_body_json(json!({"status": "success"}));
    let server = server_at("/oauth/v2/token/revoke", ok).await;
    client(&server.uri())
        .revoke(REFRESH_TOKEN, None)
        .await
        .unwrap();
    assert_eq!(form_sent(&server).await, form(&[("token", REFRESH_TOKEN)]));

    let failures = [
        (
            ResponseTemplate::new(200).set_body_json(json!({"status": "failure"})),
            "transient",
        ),
        (
            ResponseTemplate::new(200).set_body_json(error_body("invalid_code")),
            "invalid_code",
        ),
        (ResponseTemplate::new(500), "transient"),
    ];
    for (answer, code) in failures {
        let server = server_at("/oauth/v2/token/revoke", answer).await;
        let error = client(&server.uri())
            .revoke(REFRESH_TOKEN, None)
            .await
            .unwrap_err();
        assert_no_secrets(&error);
        assert_eq!(error.code(), code);
    }
}

#[tokio::test]
async fn credential_errors_are_permanent_with_200_or_400() {
    for code in PERMANENT {
        for status in [200, 400] {
            let answer = ResponseTemplate::new(status).set_body_json(error_body(code));
            let error = refresh_error(answer).await;
            assert_eq!(
                error,
                OAuthError::Permanent {
                    code: code.to_string()
                }
            );
            assert_eq!(error.code(), *code);
        }
    }
}

#[tokio::test]
async fn access_denied_with_200_or_400_and_http_429_are_throttled() {
    let body = json!({"error": "Access Denied", "status": "failure",
        "error_description": "Vous avez effectué trop de demandes"});
    for status in [200, 400] {
        let answer = ResponseTemplate::new(status).set_body_json(&body);
        assert_eq!(refresh_error(answer).await, OAuthError::Throttled);
    }
    let error = refresh_error(ResponseTemplate::new(429)).await;
    assert_eq!(
        (error.clone(), error.code()),
        (OAuthError::Throttled, "throttled")
    );
}

#[tokio::test]
async fn server_errors_are_transient_whatever_the_body_says() {
    let error = refresh_error(ResponseTemplate::new(500)).await;
    assert_eq!(error, transient("HTTP 500"));
    let answer = ResponseTemplate::new(503).set_body_json(error_body("invalid_client"));
    assert_eq!(refresh_error(answer).await, transient("HTTP 503"));
}

#[tokio::test]
async fn a_response_slower_than_the_timeout_is_transient() {
    let answer = json!({"access_token": ACCESS_TOKEN, "expires_in": 3600});
    let slow = ResponseTemplate::new(200)
        .set_body_json(answer)
        .set_delay(Duration::from_secs(5));
    let server = server_at("/oauth/v2/token", slow).await;
    let endpoints = Endpoints {
        accounts_url: Some(server.uri()),
        ..Endpoints::default()
    };
    let client = client_with(endpoints, Duration::from_millis(200));
    let error = client.refresh(&refresh_request()).await.unwrap_err();
    assert_eq!(error, transient("127.0.0.1 timed out"));
}

#[tokio::test]
async fn malformed_answers_are_transient() {
    let html = format!("<html>{CLIENT_SECRET}</html>");
    let cases = [
        (
            ResponseTemplate::new(200).set_body_string(&html),
            "response is not JSON",
        ),
        (
            ResponseTemplate::new(400).set_body_string(&html),
            "HTTP 400",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!([1])),
            "response is not a JSON object",
        ),
        (
            ResponseTemplate::new(404).set_body_json(json!({})),
            "HTTP 404",
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(json!({"token_type": "Bearer", "expires_in": 3600})),
            "response lacks access_token",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"access_token": ACCESS_TOKEN})),
            "response lacks a positive expires_in",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"error": {"nested": CLIENT_SECRET}})),
            "error field is not a string",
        ),
        (
            ResponseTemplate::new(200).set_body_string("x".repeat(100_000)),
            "response larger than 64 KiB",
        ),
    ];
    for (answer, reason) in cases {
        assert_eq!(transient_reason(refresh_error(answer).await), reason);
    }
}

#[tokio::test]
async fn an_unknown_error_code_is_transient_and_quoted_only_if_it_looks_like_one() {
    let error = refresh_error(ResponseTemplate::new(200).set_body_json(error_body("new_error")));
    let error = error.await;
    assert_eq!(
        transient_reason(error.clone()),
        "unknown error code `new_error`"
    );
    assert_eq!(error.code(), "transient");
    // A server echoing a secret of the request, or anything else than a word.
    for code in [
        "1000.SECRETrefreshtoken.0123456789abcdef",
        "weird\nline",
        &"x".repeat(41),
    ] {
        let error = refresh_error(ResponseTemplate::new(200).set_body_json(error_body(code)));
        assert_eq!(
            transient_reason(error.await),
            "unknown error code (not shown: it does not look like one)",
            "{code:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = server_at(
        "/oauth/v2/token",
        ResponseTemplate::new(307).insert_header("location", "/elsewhere"),
    )
    .await;
    let error = client(&server.uri())
        .refresh(&refresh_request())
        .await
        .unwrap_err();
    assert_eq!(error, transient("HTTP 307"));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let error = client(&url).refresh(&refresh_request()).await.unwrap_err();
    assert_no_secrets(&error);
    assert_eq!(
        transient_reason(error),
        "connection to 127.0.0.1 failed: connection refused"
    );
}

#[tokio::test]
async fn requests_go_to_the_per_domain_server_before_the_fallback() {
    let answer = json!({"access_token": ACCESS_TOKEN, "expires_in": 3600});
    let chosen = server_at(
        "/oauth/v2/token",
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;
    let fallback = MockServer::start().await;
    let endpoints = Endpoints {
        accounts_url: Some(fallback.uri()),
        per_domain: BTreeMap::from([(
            "https://crm.example.test/".into(),
            format!("{}/", chosen.uri()),
        )]),
    };
    let client = client_with(endpoints, Duration::from_secs(5));
    client.refresh(&refresh_request()).await.unwrap();
    assert_eq!(chosen.received_requests().await.unwrap().len(), 1);
    assert!(fallback.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn no_accounts_server_fails_before_any_request() {
    let client = client_with(Endpoints::default(), Duration::from_secs(5));
    let error = client.refresh(&refresh_request()).await.unwrap_err();
    let api_domain = Some("https://crm.example.test".to_owned());
    assert_eq!(error, OAuthError::NoAccountsServer { api_domain });
    assert_eq!(error.code(), "no_accounts_server");
}

fn accounts(endpoints: Endpoints, api_domain: Option<&str>) -> Result<String, OAuthError> {
    client_with(endpoints, Duration::from_secs(5)).accounts_url(api_domain)
}

#[test]
fn every_data_centre_and_its_sandbox_and_developer_hosts_map_to_its_accounts_server() {
    let table = [
        ("zohoapis.com", "https://accounts.zoho.com"),
        ("zohoapis.eu", "https://accounts.zoho.eu"),
        ("zohoapis.in", "https://accounts.zoho.in"),
        ("zohoapis.com.cn", "https://accounts.zoho.com.cn"),
        ("zohoapis.jp", "https://accounts.zoho.jp"),
        ("zohoapis.com.au", "https://accounts.zoho.com.au"),
        ("zohoapis.ca", "https://accounts.zohocloud.ca"),
        ("zohoapis.sa", "https://accounts.zoho.sa"),
    ];
    for (region, expected) in table {
        for host in ["www", "sandbox", "developer", "WWW"] {
            for tail in ["", "/"] {
                let api_domain = format!("https://{host}.{region}{tail}");
                let found = accounts(Endpoints::default(), Some(&api_domain)).unwrap();
                assert_eq!(found, expected, "{api_domain}");
            }
        }
    }
}

#[test]
fn other_domains_use_the_fallback_or_fail_naming_the_domain() {
    let fallback = Endpoints {
        accounts_url: Some("http://127.0.0.1:9/".into()),
        ..Endpoints::default()
    };
    let outside = [
        "https://crm.example.test",
        "http://www.zohoapis.com",
        "https://www.zohoapis.com:8443",
        "https://eu.zohoapis.com",
        "https://www.zohoapis.com.evil.test",
        "www.zohoapis.com",
    ];
    for api_domain in outside {
        let found = accounts(fallback.clone(), Some(api_domain)).unwrap();
        assert_eq!(found, "http://127.0.0.1:9", "{api_domain}");
        let error = accounts(Endpoints::default(), Some(api_domain)).unwrap_err();
        let expected = OAuthError::NoAccountsServer {
            api_domain: Some(api_domain.into()),
        };
        assert_eq!(error, expected);
        assert!(error.to_string().contains(api_domain));
    }
    assert_eq!(accounts(fallback, None).unwrap(), "http://127.0.0.1:9");
    let error = accounts(Endpoints::default(), None).unwrap_err();
    assert_eq!(error, OAuthError::NoAccountsServer { api_domain: None });
    assert!(error.to_string().contains("has no api_domain"), "{error}");
}

#[test]
fn a_per_domain_entry_wins_over_the_table() {
    let endpoints = Endpoints {
        accounts_url: Some("https://fallback.test".into()),
        per_domain: BTreeMap::from([(
            "https://www.zohoapis.eu".into(),
            "http://127.0.0.1:7/".into(),
        )]),
    };
    for api_domain in ["https://www.zohoapis.eu", "https://WWW.zohoapis.eu/"] {
        assert_eq!(
            accounts(endpoints.clone(), Some(api_domain)).unwrap(),
            "http://127.0.0.1:7"
        );
    }
    let other = accounts(endpoints, Some("https://sandbox.zohoapis.eu")).unwrap();
    assert_eq!(other, "https://accounts.zoho.eu");
}

#[test]
fn an_accounts_url_that_is_not_http_is_a_setup_error() {
    for bad in ["accounts.zoho.com", "ftp://accounts.zoho.com", ""] {
        let endpoints = Endpoints {
            accounts_url: Some(bad.into()),
            ..Endpoints::default()
        };
        let error = OAuthClient::new(endpoints, Duration::from_secs(1), Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(error.code(), "setup");
    }
    let endpoints = Endpoints {
        per_domain: BTreeMap::from([("https://crm.example.test".into(), "not a url".into())]),
        ..Endpoints::default()
    };
    let error = OAuthClient::new(endpoints, Duration::from_secs(1), Duration::from_secs(1));
    assert!(matches!(error, Err(OAuthError::Setup { .. })));
}

#[test]
fn grant_debug_holds_no_secrets() {
    let grant = Grant {
        access_token: ACCESS_TOKEN.into(),
        refresh_token: Some(ROTATED_REFRESH.into()),
        expires_in: Duration::from_secs(3600),
        api_domain: Some("https://www.zohoapis.com".into()),
    };
    let shown = format!("{grant:?}");
    assert!(
        !shown.contains(ACCESS_TOKEN) && !shown.contains(ROTATED_REFRESH),
        "{shown}"
    );
    assert!(shown.contains("<redacted>") && shown.contains("www.zohoapis.com"));
    // (Error messages are checked where they are made from real answers that carry
    // secrets: `refresh_error` and `assert_no_secrets` in the tests above.)
}
