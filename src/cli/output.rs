//! Formatting for people: masked secrets, times, and plain-text tables.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use humantime_serde::re::humantime;
use serde_json::Value;

/// The token fields that hold secrets, masked unless `--reveal`.
pub const SECRET_FIELDS: [&str; 4] = [
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
];

/// `s` with its control characters written out as JSON writes them (`\u001b`), so that
/// a value any client of the socket stored cannot drive the terminal it is shown on:
/// clear it, retitle it, or forge a row with a newline. `lines`: keep newlines, for a
/// whole output whose own lines they are. Inside a JSON string the result means what
/// the original did, so `--json` output stays valid JSON.
pub fn printable(s: &str, lines: bool) -> Cow<'_, str> {
    let escape = |c: char| c.is_control() && !(lines && (c == '\n' || c == '\t'));
    if !s.chars().any(escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escape(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A secret shown by its start and length, like `1000.ab…(40)`: enough to tell two
/// tokens apart, never enough to use one. At most 7 characters and at most a quarter of
/// the secret are shown, so a short secret shows little more than its length.
pub fn mask(secret: &str) -> String {
    let len = secret.chars().count();
    let shown: String = secret.chars().take((len / 4).min(7)).collect();
    format!("{}…({len})", printable(&shown, false))
}

/// A token object with every secret field masked (`None`/null fields stay null).
pub fn masked_token(token: &Value) -> Value {
    let mut token = token.clone();
    for field in SECRET_FIELDS {
        if let Some(s) = token.get(field).and_then(Value::as_str) {
            token[field] = Value::String(mask(s));
        }
    }
    token
}

/// Epoch milliseconds as UTC, to the second: `2026-11-22T08:14:29Z`.
pub fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    // humantime formats years up to 9999 only (its Display fails past them, and
    // `to_string` would panic); a stored expiry_time can be any 19 digits.
    let mut out = String::new();
    match write!(out, "{}", humantime::format_rfc3339_seconds(at)) {
        Ok(()) => out,
        Err(_) => format!("{ms} ms after 1970"),
    }
}

/// Epoch milliseconds relative to now, coarsely: `in 5m`, `3d ago`.
pub fn relative(ms: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let delta = ms - now;
    let secs = (delta.unsigned_abs() / 1000) as i64;
    let (n, unit) = match secs {
        s if s < 60 => (s, "s"),
        s if s < 3600 => (s / 60, "m"),
        s if s < 86_400 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    if delta >= 0 {
        format!("in {n}{unit}")
    } else {
        format!("{n}{unit} ago")
    }
}

/// An epoch-ms value (a number, or a string of digits as `expiry_time` is) as
/// "relative (absolute)", or `-`.
pub fn when(v: &Value) -> String {
    let ms = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    ms.map_or("-".to_owned(), |ms| {
        format!("{} ({})", relative(ms), time(ms))
    })
}

/// A JSON string field's text, or `-` for null.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => printable(s, false).into_owned(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Left-aligned columns separated by two spaces, with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// Pretty JSON with a final newline.
pub fn json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out_and_newlines_kept_only_between_lines() {
        assert_eq!(
            printable("a\u{1b}[2J\u{9b}\r\nb\tc", true),
            "a\\u001b[2J\\u009b\\u000d\nb\tc"
        );
        assert_eq!(printable("a\nb\t", false), "a\\u000ab\\u0009");
        assert!(matches!(
            printable("plain, ünïcode", false),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn masks_show_a_bounded_prefix_and_the_length() {
        let forty = format!("1000.ab{}", "x".repeat(33));
        assert_eq!(mask(&forty), "1000.ab…(40)");
        assert_eq!(mask("s3cr3t"), "s…(6)");
        assert_eq!(mask("abc"), "…(3)");
        assert_eq!(mask(""), "…(0)");
    }

    #[test]
    fn masked_tokens_keep_public_fields_and_nulls() {
        let t = serde_json::json!({"id": "1", "user_name": "u", "refresh_token": "1000.refresh.token.xyz",
            "access_token": null, "client_secret": "s3cr3t-s3cr3t"});
        let m = masked_token(&t);
        assert_eq!(m["id"], "1");
        assert_eq!(m["user_name"], "u");
        assert_eq!(m["access_token"], Value::Null);
        assert_eq!(m["refresh_token"], "1000.…(22)");
        assert_eq!(m["client_secret"], "s3c…(13)");
    }

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(time(1_795_330_406_683), "2026-11-22T06:53:26Z");
        assert_eq!(when(&Value::Null), "-");
        assert!(when(&serde_json::json!("1795330406683")).ends_with("(2026-11-22T06:53:26Z)"));
        // Past year 9999, as a stored expiry_time may be: shown, not a panic.
        assert_eq!(time(i64::MAX), format!("{} ms after 1970", i64::MAX));
        assert!(when(&serde_json::json!("999999999999999999")).contains("ms after 1970"));
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "USER"],
            &[vec!["1".into(), "a".into()], vec!["10".into(), "bb".into()]],
        );
        assert_eq!(t, "ID  USER\n1   a\n10  bb\n");
    }
}
