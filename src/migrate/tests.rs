//! The readers on files made here: good ones, each kind of malformed record with its
//! line, CSV quoting, and error messages that quote no value.

use std::path::PathBuf;

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

/// The SDK's FileStore header, as its `csv.writer` writes it.
const HEADER: &str =
    "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain";

fn file(dir: &TempDir, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A row whose secret fields all start with SECRET, so a test can check no message
/// quotes one.
fn row(id: u32, expiry: &str) -> String {
    format!(
        "{id},user{id}@example.com:1,1000.CLIENT,SECRET-cs-{id},SECRET-rt-{id},SECRET-at-{id},,{expiry},https://example.com/cb,https://www.zohoapis.com"
    )
}

fn ids(records: &[Record]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|(n, t)| (*n, t.id.clone().unwrap_or_default()))
        .collect()
}

/// The problems of a read that had to fail, as `(line, message)`, after checking the
/// whole error's text quotes no secret.
fn problems(result: Result<Vec<Record>, ReadError>) -> Vec<(u64, String)> {
    let e = result.unwrap_err();
    let shown = e.to_string();
    assert!(!shown.contains("SECRET"), "{shown}");
    e.problems()
        .iter()
        .map(|p| (p.at.number(), p.message.clone()))
        .collect()
}

#[test]
fn filestore_as_the_sdk_writes_it() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{HEADER}\r\n{}\r\n{}\r\n",
        row(1, "1795330406683"),
        row(2, "")
    );
    let path = file(&dir, "tokens.csv", text.as_bytes());
    let records = read(Format::Filestore, &path).unwrap();
    assert_eq!(ids(&records), [(2, "1".into()), (3, "2".into())]);
    let t = &records[0].1;
    assert_eq!(t.user_name.as_deref(), Some("user1@example.com:1"));
    assert_eq!(t.refresh_token.as_deref(), Some("SECRET-rt-1"));
    assert_eq!(t.grant_token, None, "an empty field is null");
    assert_eq!(t.expiry_time.as_deref(), Some("1795330406683"));
    assert_eq!(t.redirect_url.as_deref(), Some("https://example.com/cb"));
    assert_eq!(t.api_domain.as_deref(), Some("https://www.zohoapis.com"));
    assert_eq!(records[1].1.expiry_time, None);
}

#[test]
fn filestore_legacy_nine_columns_have_no_api_domain() {
    let dir = TempDir::new().unwrap();
    let header = "id,user_mail,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_url";
    let legacy = row(1, "1795330406683");
    let legacy = legacy.rsplit_once(',').unwrap().0;
    let path = file(&dir, "old.csv", format!("{header}\n{legacy}\n").as_bytes());
    let records = read(Format::Filestore, &path).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.api_domain, None);
    assert_eq!(
        records[0].1.redirect_url.as_deref(),
        Some("https://example.com/cb")
    );
    // A ten-column row in a nine-column file is malformed.
    let mixed = format!("{header}\n{legacy}\n{}\n", row(2, ""));
    let path = file(&dir, "mixed.csv", mixed.as_bytes());
    assert_eq!(
        problems(read(Format::Filestore, &path)),
        [(3, "expected 9 fields, found 10".into())]
    );
}

#[test]
fn quoted_fields_keep_commas_quotes_and_newlines_and_lines_count_right() {
    let dir = TempDir::new().unwrap();
    for eol in ["\n", "\r\n"] {
        let text = format!(
            "\u{feff}{HEADER}\n\n1,\"a,b@example.com:1\",c,s,\"r\"\"q\",a,,1,\"https://x/cb\nsecond line\",d\n\n{}\n",
            row(2, "5")
        )
        .replace('\n', eol);
        let path = file(&dir, "quoted.csv", text.as_bytes());
        let records = read(Format::Filestore, &path).unwrap();
        // The blank line 2 is skipped; the record on lines 3-4 is named by line 3; line
        // 5 is blank; the next record is on line 6.
        assert_eq!(ids(&records), [(3, "1".into()), (6, "2".into())], "{eol:?}");
        let t = &records[0].1;
        assert_eq!(t.user_name.as_deref(), Some("a,b@example.com:1"));
        assert_eq!(t.refresh_token.as_deref(), Some("r\"q"));
        let url = format!("https://x/cb{eol}second line");
        assert_eq!(t.redirect_url.as_deref(), Some(url.as_str()));
    }
}

#[test]
fn each_kind_of_malformed_row_is_named_by_its_line() {
    let dir = TempDir::new().unwrap();
    let long = "x".repeat(fields::MAX_FIELD_BYTES + 1);
    let mut text = format!("{HEADER}\n{}\n", row(1, "1"));
    text += "2,only-two\n"; // line 3
    text += &format!("{}\n", row(3, "SECRET-soon")); // 4: expiry not digits
    text += &format!("{}\n", row(4, "-1")); // 5: nor a sign
    text += &format!("{}\n", row(5, "12345678901234567890")); // 6: past i64
    text += "6,u6,c,SECRET-cs,,,,1,,\n"; // 7: nothing to import
    text += &format!("{}\n", row(1, "1").replacen("user1", "user7", 1)); // 8: id again
    text += &format!("{}\n", row(8, "1").replacen("user8", "user1", 1)); // 9: user again
    text += &format!("9,u9,c,{long},SECRET-r,,,1,,\n"); // 10: too long
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"10,u\xff,c,s,SECRET-r,,,1,,\n"); // 11: not UTF-8
    let path = file(&dir, "bad.csv", &bytes);
    let found = problems(read(Format::Filestore, &path));
    let lines: Vec<u64> = found.iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10, 11], "{found:?}");
    assert_eq!(found[0].1, "expected 10 fields, found 2");
    assert!(found[1].1.contains("expiry_time"), "{found:?}");
    assert!(found[4].1.contains("nothing to import"), "{found:?}");
    assert_eq!(found[5].1, "the same `id` as line 2");
    assert_eq!(found[6].1, "the same `user_name` as line 2");
    assert!(found[7].1.contains("longer than"), "{found:?}");
    assert_eq!(found[8].1, "field 2 is not valid UTF-8");
    let shown = read(Format::Filestore, &path).unwrap_err().to_string();
    assert!(shown.starts_with(&format!("{}: 9 malformed records", path.display())));
    assert!(!shown.contains(&long));
}

#[test]
fn one_problem_reads_as_one_line_and_many_are_capped() {
    let dir = TempDir::new().unwrap();
    let path = file(&dir, "one.csv", format!("{HEADER}\n1,2\n").as_bytes());
    let shown = read(Format::Filestore, &path).unwrap_err().to_string();
    assert_eq!(
        shown,
        format!("{}: line 2: expected 10 fields, found 2", path.display())
    );
    let many = format!("{HEADER}\n{}", "1,2\n".repeat(MAX_LISTED + 5));
    let path = file(&dir, "many.csv", many.as_bytes());
    let e = read(Format::Filestore, &path).unwrap_err();
    assert_eq!(e.problems().len(), MAX_LISTED);
    assert!(e.to_string().ends_with("... and 5 more"), "{e}");
}

#[test]
fn a_file_that_is_not_a_filestore_says_so() {
    let dir = TempDir::new().unwrap();
    let empty = file(&dir, "empty.csv", b"");
    assert!(matches!(
        read(Format::Filestore, &empty),
        Err(ReadError::NotTheFormat { .. })
    ));
    // A file without its header: the first row is data, and is not quoted back.
    let headerless = file(&dir, "data.csv", format!("{}\n", row(1, "1")).as_bytes());
    let e = read(Format::Filestore, &headerless).unwrap_err();
    assert!(matches!(e, ReadError::NotTheFormat { .. }));
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(!e.to_string().contains("SECRET"), "{e}");
    let missing = dir.path().join("missing.csv");
    assert!(matches!(
        read(Format::Filestore, &missing),
        Err(ReadError::Io { .. })
    ));
    // The header only: no tokens, no error.
    let header = file(&dir, "header.csv", format!("{HEADER}\r\n").as_bytes());
    assert!(read(Format::Filestore, &header).unwrap().is_empty());
}

#[test]
fn mysql_csv_any_order_null_marker_and_extra_columns() {
    let dir = TempDir::new().unwrap();
    let text = "expiry_time,Refresh_Token,id,user_name,client_id,client_secret,access_token,grant_token,redirect_url,note\n\
                1795330406683,SECRET-r1,1,u1,c,SECRET-s,\\N,\\N,\\N,x\n\
                \\N,SECRET-r2,2,,c,SECRET-s,,,https://x/cb,y\n";
    let path = file(&dir, "export.csv", text.as_bytes());
    let records = read(Format::MysqlCsv, &path).unwrap();
    assert_eq!(ids(&records), [(2, "1".into()), (3, "2".into())]);
    let (a, b) = (&records[0].1, &records[1].1);
    assert_eq!(a.refresh_token.as_deref(), Some("SECRET-r1"));
    assert_eq!(a.expiry_time.as_deref(), Some("1795330406683"));
    assert_eq!(
        (a.access_token.as_ref(), a.redirect_url.as_ref()),
        (None, None)
    );
    assert_eq!(a.api_domain, None, "the column may be missing");
    assert_eq!((b.user_name.as_ref(), b.expiry_time.as_ref()), (None, None));
    assert_eq!(b.redirect_url.as_deref(), Some("https://x/cb"));
}

#[test]
fn mysql_csv_header_and_row_errors() {
    let dir = TempDir::new().unwrap();
    let names = "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_url,api_domain";
    let no_refresh = names.replace("refresh_token,", "");
    let path = file(&dir, "a.csv", format!("{no_refresh}\n").as_bytes());
    let e = read(Format::MysqlCsv, &path).unwrap_err();
    assert!(e.to_string().contains("no `refresh_token` column"), "{e}");
    let twice = format!("{names},id\n");
    let path = file(&dir, "b.csv", twice.as_bytes());
    let e = read(Format::MysqlCsv, &path).unwrap_err();
    assert!(e.to_string().contains("`id` twice"), "{e}");
    // What the Python test does: the third line cut to two columns.
    let text = format!(
        "{names}\n{}\n1,only-two-columns\n{}\n",
        row(1, "1"),
        row(3, "1")
    );
    let path = file(&dir, "c.csv", text.as_bytes());
    assert_eq!(
        problems(read(Format::MysqlCsv, &path)),
        [(3, "expected 10 fields, found 2".into())]
    );
}

#[test]
fn filestore_keeps_a_literal_backslash_n() {
    // Only a MySQL export means NULL by `\N`; the SDK's file has no such marker.
    let dir = TempDir::new().unwrap();
    let text = format!("{HEADER}\n1,u,c,s,r,a,\\N,1,,\n");
    let path = file(&dir, "f.csv", text.as_bytes());
    let records = read(Format::Filestore, &path).unwrap();
    assert_eq!(records[0].1.grant_token.as_deref(), Some("\\N"));
}

/// The Kaizen #192 sample's table, as the SDK's MySQL DBStore declares it.
const KAIZEN: &str = "CREATE TABLE oauthtoken (id varchar(10) NOT NULL, user_name varchar(255), \
    client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), \
    access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), \
    redirect_url varchar(255), api_domain varchar(255), primary key (id))";

fn kaizen(dir: &TempDir, rows: &[&str]) -> PathBuf {
    let path = dir.path().join("zohooauth.db");
    let db = Connection::open(&path).unwrap();
    db.execute_batch(KAIZEN).unwrap();
    for r in rows {
        db.execute_batch(&format!("INSERT INTO oauthtoken VALUES ({r})"))
            .unwrap();
    }
    path
}

#[test]
fn sqlite_kaizen_sample_reads_read_only() {
    let dir = TempDir::new().unwrap();
    let path = kaizen(
        &dir,
        &[
            "'1','u1','c','SECRET-s','SECRET-r','SECRET-a',NULL,'1795330406683','https://x/cb','https://www.zohoapis.com'",
            "'2','','c','SECRET-s','SECRET-r2','',NULL,1795330406684,NULL,NULL",
        ],
    );
    let before = std::fs::read(&path).unwrap();
    let records = read(Format::Sqlite, &path).unwrap();
    assert_eq!(ids(&records), [(1, "1".into()), (2, "2".into())]);
    assert_eq!(
        records[0].1.api_domain.as_deref(),
        Some("https://www.zohoapis.com")
    );
    let t = &records[1].1;
    assert_eq!(t.user_name, None, "an empty string is null");
    assert_eq!(t.access_token, None);
    assert_eq!(
        t.expiry_time.as_deref(),
        Some("1795330406684"),
        "an integer is its digits"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the source is not changed"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "no journal or WAL left beside it: {names:?}"
    );
}

#[test]
fn sqlite_malformed_rows_are_named_by_row() {
    let dir = TempDir::new().unwrap();
    let path = kaizen(
        &dir,
        &[
            "'1','u1','c','SECRET-s','SECRET-r','SECRET-a',NULL,'1','',''",
            "'2','u2','c','SECRET-s','SECRET-r2','',NULL,'SECRET-x','',''",
            "'3','u3','c','SECRET-s','SECRET-r3','',NULL,1.5,'',''",
            "'4','u4','c','SECRET-s',X'00ff','',NULL,'1','',''",
            "'5','u5','c','SECRET-s',NULL,NULL,NULL,'1','',''",
        ],
    );
    let found = problems(read(Format::Sqlite, &path));
    assert_eq!(
        found.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    // A varchar column turns 1.5 into the text "1.5": not digits either.
    assert!(found[1].1.contains("expiry_time"), "{found:?}");
    assert!(found[2].1.contains("blob"), "{found:?}");
    let shown = read(Format::Sqlite, &path).unwrap_err().to_string();
    assert!(shown.contains("row 2: `expiry_time`"), "{shown}");
}

#[test]
fn sqlite_without_the_table_or_a_column_or_not_sqlite() {
    let dir = TempDir::new().unwrap();
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE tokens (id TEXT)")
        .unwrap();
    let e = read(Format::Sqlite, &other).unwrap_err();
    assert!(e.to_string().contains("no `oauthtoken` table"), "{e}");
    let partial = dir.path().join("partial.db");
    Connection::open(&partial)
        .unwrap()
        .execute_batch("CREATE TABLE oauthtoken (id TEXT, user_name TEXT)")
        .unwrap();
    let e = read(Format::Sqlite, &partial).unwrap_err();
    assert!(e.to_string().contains("no `client_id` column"), "{e}");
    // A table without declared types keeps a real number as one.
    let untyped = dir.path().join("untyped.db");
    Connection::open(&untyped)
        .unwrap()
        .execute_batch(
            "CREATE TABLE oauthtoken (id, user_name, client_id, client_secret, refresh_token, \
             access_token, grant_token, expiry_time, redirect_url);
             INSERT INTO oauthtoken VALUES ('1', 'u', 'c', 's', 'r', NULL, NULL, 1.5, NULL);",
        )
        .unwrap();
    assert_eq!(
        problems(read(Format::Sqlite, &untyped)),
        [(1, "`expiry_time` holds a real number, not text".into())]
    );
    let text = file(
        &dir,
        "text.db",
        b"this is not a database, not at all, no; it is text",
    );
    assert!(matches!(
        read(Format::Sqlite, &text),
        Err(ReadError::Sqlite { .. })
    ));
    assert!(matches!(
        read(Format::Sqlite, &dir.path().join("missing.db")),
        Err(ReadError::Io { .. })
    ));
}

#[test]
fn export_writes_what_the_filestore_reader_reads_back() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{HEADER}\r\n{}\r\n1x,\"q\"\"uote\",c,s,\"r,1\",a,g,7,\"multi\nline\",\r\n",
        row(1, "1795330406683")
    );
    let source = file(&dir, "in.csv", text.as_bytes());
    let tokens: Vec<Token> = read(Format::Filestore, &source)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut w = FileStoreWriter::new(Vec::new()).unwrap();
    for t in &tokens {
        w.write(t).unwrap();
    }
    let out = w.finish().unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        text,
        "byte for byte as the SDK writes"
    );
    let back = file(&dir, "out.csv", &out);
    let again: Vec<Token> = read(Format::Filestore, &back)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(again, tokens);
}
