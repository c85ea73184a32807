use super::schema::MIGRATIONS;
use super::*;

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("sub/tokens.db"), Duration::from_secs(1)).unwrap();
    (dir, db)
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn user(name: &str, refresh: &str) -> Token {
    Token {
        user_name: s(name),
        client_id: s("cid"),
        client_secret: s("csecret"),
        refresh_token: s(refresh),
        access_token: s(&format!("access-{refresh}")),
        expiry_time: s("1795330406683"),
        ..Token::default()
    }
}

fn save(db: &mut Db, t: Token) -> Result<StoredToken, StoreError> {
    match db.apply_batch(&[Write::Save(t)], 1000).unwrap().remove(0)? {
        Outcome::Saved(t) => Ok(t),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn open_sets_wal_and_full_sync_and_is_idempotent() {
    let (dir, db) = open();
    let mode: String = db
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let sync: i64 = db
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), sync), ("wal", 2));
    drop(db);
    // A second open of the same file finds the schema current and keeps the data.
    let again = Db::open(&dir.path().join("sub/tokens.db"), Duration::from_secs(1)).unwrap();
    assert_eq!(again.count().unwrap(), 0);
}

#[test]
fn the_database_and_its_wal_are_private_to_the_daemons_user_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (dir, mut db) = open();
    let path = dir.path().join("sub/tokens.db");
    save(&mut db, user("u", "r")).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("sub/tokens.db-wal")), 0o600);
    drop(db);
    // A file made readable by others (a copy, a restore from backup) is closed again.
    let wal = dir.path().join("sub/tokens.db-wal");
    for p in [&path, &wal] {
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let _db = Db::open(&path, Duration::from_secs(1)).unwrap();
    assert_eq!((mode(&path), mode(&wal)), (0o600, 0o600));
}

#[test]
fn a_database_from_a_newer_tokend_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99; CREATE TABLE t (x);")
        .unwrap();
    let message = Db::open(&path, Duration::from_secs(1))
        .err()
        .expect("opened a database of a newer schema")
        .to_string();
    assert!(message.contains("newer tokend"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (version, journal.as_str()),
        (99, "delete"),
        "the file was changed"
    );
}

#[test]
fn a_second_open_while_the_first_is_open_is_refused_naming_the_file() {
    let (dir, db) = open();
    let path = dir.path().join("sub/tokens.db");
    let err = Db::open(&path, Duration::from_millis(10))
        .err()
        .expect("a second open succeeded while the first held the file");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("another tokend"), "{message}");
    drop(db);
    Db::open(&path, Duration::from_millis(10)).unwrap();
}

#[test]
fn writes_close_the_shared_read_transaction_and_later_reads_see_them() {
    let (_dir, mut db) = open();
    assert!(db.begin_read().unwrap());
    assert!(!db.begin_read().unwrap(), "a second begin reuses the first");
    assert!(db.find_by_id("1").unwrap().is_none());
    let saved = save(&mut db, user("u", "r1")).unwrap();
    assert!(db.begin_read().unwrap(), "the write closed the read");
    assert_eq!(db.find_by_id(saved.id()).unwrap(), Some(saved));
    db.end_read();
    db.end_read(); // closing twice is harmless
    db.record_uses(&[("1".to_owned(), 5)]).unwrap();
}

#[test]
fn the_access_hash_is_fnv1a_64_and_never_changes() {
    // Stored in every database: a change here would hide every token from a lookup by
    // access token. Test vectors from the FNV reference.
    assert_eq!(access_hash("") as u64, 0xcbf2_9ce4_8422_2325);
    assert_eq!(access_hash("a") as u64, 0xaf63_dc4c_8601_ec8c);
    assert_eq!(access_hash("foobar") as u64, 0x8594_4171_f739_67e8);
}

#[test]
fn a_version_1_database_is_migrated_and_found_by_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO tokens (id, access_token, created_at, updated_at, version)
             VALUES ('7', 'old-access', 1, 1, 41);",
        )
        .unwrap();
    }
    let mut db = Db::open(&path, Duration::from_secs(1)).unwrap();
    let bare = |access: &str| Token {
        access_token: s(access),
        ..Token::default()
    };
    assert_eq!(db.find(&bare("old-access")).unwrap().unwrap().id(), "7");
    // A save that changes the access token moves its hash too.
    let mut newer = bare("new-access");
    newer.id = s("7");
    // Versions go on from the highest stored (schema v4's counter starts above it).
    assert_eq!(save(&mut db, newer).unwrap().meta.version, 42);
    assert!(db.find(&bare("old-access")).unwrap().is_none());
    assert_eq!(db.find(&bare("new-access")).unwrap().unwrap().id(), "7");
}

#[test]
fn a_second_save_of_a_user_updates_in_place_and_keeps_unset_fields() {
    let (_dir, mut db) = open();
    let first = save(&mut db, user("u@x:1", "r1")).unwrap();
    let second = save(
        &mut db,
        Token {
            user_name: s("u@x:1"),
            access_token: s("newer"),
            ..Token::default()
        },
    )
    .unwrap();
    assert_eq!(second.token.id, first.token.id);
    assert_eq!(second.token.access_token, s("newer"));
    assert_eq!(second.token.refresh_token, s("r1"));
    assert_eq!(db.count().unwrap(), 1);
}

#[test]
fn ids_count_up_as_strings_and_are_never_reused() {
    let (_dir, mut db) = open();
    let ids: Vec<String> = (0..12)
        .map(|i| {
            save(&mut db, user(&format!("u{i}"), &format!("r{i}")))
                .unwrap()
                .token
                .id
                .unwrap()
        })
        .collect();
    assert_eq!(ids.last().map(String::as_str), Some("12"));
    db.apply_batch(&[Write::Delete("12".into())], 0).unwrap();
    let next = save(&mut db, user("late", "rl")).unwrap();
    assert_eq!(next.token.id, s("13"));
}

#[test]
fn an_imported_numeric_id_is_never_generated_even_after_its_delete() {
    let (_dir, mut db) = open();
    let mut imported = user("imported", "ri");
    imported.id = s("7");
    save(&mut db, imported).unwrap();
    db.apply_batch(&[Write::Delete("7".into())], 0).unwrap();
    assert_eq!(save(&mut db, user("new", "rn")).unwrap().token.id, s("8"));
    // Ids that are not canonical numbers never collide with generated ones.
    for odd in ["007", "-3", "abc"] {
        let mut t = user(odd, odd);
        t.id = s(odd);
        assert_eq!(save(&mut db, t).unwrap().token.id, s(odd));
    }
    assert_eq!(save(&mut db, user("next", "rx")).unwrap().token.id, s("9"));
}

#[test]
fn a_kept_id_near_the_counters_limit_never_breaks_later_saves() {
    let (_dir, mut db) = open();
    let huge = [
        i64::MAX.to_string(),
        (i64::MAX - 1).to_string(),
        "9007199254740993".into(),
    ];
    for (n, id) in huge.iter().enumerate() {
        let mut t = user(&format!("huge{n}"), &format!("rh{n}"));
        t.id = Some(id.clone());
        assert_eq!(save(&mut db, t).unwrap().token.id.as_ref(), Some(id));
    }
    // Such an id is kept but leaves the counter alone: moving it there would leave no
    // room to count on, and every later save without an id would fail.
    for n in 1..=3 {
        let t = save(&mut db, user(&format!("after{n}"), &format!("ra{n}"))).unwrap();
        assert_eq!(t.token.id, Some(n.to_string()));
    }
}

#[test]
fn an_unknown_id_with_a_known_user_updates_that_user_instead_of_duplicating() {
    let (_dir, mut db) = open();
    let stored = save(&mut db, user("u", "r1")).unwrap();
    let mut again = user("u", "r2");
    again.id = s("999");
    let saved = save(&mut db, again).unwrap();
    assert_eq!(saved.token.id, stored.token.id);
    assert_eq!(db.count().unwrap(), 1);
}

#[test]
fn giving_a_second_token_an_existing_user_name_is_a_conflict() {
    let (_dir, mut db) = open();
    save(&mut db, user("a", "ra")).unwrap();
    let b = save(&mut db, user("b", "rb")).unwrap();
    let rename = Token {
        id: b.token.id.clone(),
        user_name: s("a"),
        ..Token::default()
    };
    assert!(matches!(save(&mut db, rename), Err(StoreError::Conflict)));
    assert_eq!(
        db.find_by_id(b.id()).unwrap().unwrap().token.user_name,
        s("b")
    );
}

#[test]
fn one_failed_save_in_a_batch_leaves_the_others_committed() {
    let (_dir, mut db) = open();
    let outcomes = db
        .apply_batch(
            &[
                Write::Save(user("a", "ra")),
                Write::Save(Token {
                    user_name: s("nobody"),
                    ..Token::default()
                }),
                Write::Save(user("c", "rc")),
            ],
            5,
        )
        .unwrap();
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
    assert!(matches!(outcomes[1], Err(StoreError::IncompleteToken)));
    assert_eq!(db.count().unwrap(), 2);
}

#[test]
fn credentials_match_grant_first_then_refresh() {
    let (_dir, mut db) = open();
    let mut with_grant = user("g", "rg");
    with_grant.grant_token = s("grant-1");
    save(&mut db, with_grant).unwrap();
    save(&mut db, user("other", "r-other")).unwrap();
    let by = |grant: Option<&str>, refresh: Option<&str>| {
        let q = Token {
            client_id: s("cid"),
            client_secret: s("csecret"),
            grant_token: grant.map(String::from),
            refresh_token: refresh.map(String::from),
            ..Token::default()
        };
        db.find(&q).unwrap().and_then(|t| t.token.user_name)
    };
    assert_eq!(by(Some("grant-1"), None), s("g"));
    assert_eq!(by(Some("grant-1"), Some("r-other")), s("g"));
    assert_eq!(by(Some("unknown"), Some("r-other")), s("other"));
    assert_eq!(by(None, Some("rg")), s("g"));
    assert_eq!(by(Some("unknown"), None), None);
}

#[test]
fn paging_is_numeric_for_generated_ids_and_visits_each_once() {
    let (_dir, mut db) = open();
    for i in 0..25 {
        save(&mut db, user(&format!("u{i}"), &format!("r{i}"))).unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = db.list(after.as_deref(), 10).unwrap();
        seen.extend(page.iter().map(|t| t.id().to_owned()));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=25).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    // A cursor whose token was deleted meanwhile still continues from its place.
    db.apply_batch(&[Write::Delete("10".into())], 0).unwrap();
    let (page, _) = db.list(Some("10"), 1).unwrap();
    assert_eq!(page[0].id(), "11");
}

#[test]
fn hostile_values_are_bound_not_interpreted() {
    let (_dir, mut db) = open();
    let evil = "x'); DROP TABLE tokens; --\"\\ ünï 🦀";
    let mut t = user(evil, evil);
    t.client_secret = s(evil);
    let saved = save(&mut db, t.clone()).unwrap();
    assert_eq!(saved.token.user_name.as_deref(), Some(evil));
    let found = db.find(&t).unwrap().unwrap();
    assert_eq!(found.token.refresh_token.as_deref(), Some(evil));
    assert_eq!(db.count().unwrap(), 1);
}

#[test]
fn lookups_by_key_use_an_index() {
    let (_dir, db) = open();
    for condition in [
        "user_name = 'x'",
        "access_hash = 1 AND access_token = 'x'",
        "refresh_token = 'x'",
        "grant_token = 'x'",
        "id = 'x'",
    ] {
        let plan: String = db
            .conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN SELECT * FROM tokens WHERE {condition}"),
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("INDEX"), "{condition}: {plan}");
    }
    let plan: String = db
        .conn
        .query_row(
            &format!("EXPLAIN QUERY PLAN SELECT id FROM tokens WHERE page_key > {AFTER} ORDER BY page_key LIMIT 5"),
            ["7"],
            |r| r.get(3),
        )
        .unwrap();
    assert!(
        plan.contains("INDEX") && plan.contains("page_key>"),
        "paging: {plan}"
    );
    let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Vec<String> {
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt.query_map(params, |r| r.get(3)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(
        plan(scan::COUNT_BY_STATE, &[]),
        ["SCAN tokens USING COVERING INDEX tokens_state"],
        "counting by state reads the index alone, with no sort"
    );
    assert_eq!(
        plan(&scan::schedule_page_sql(), &[&"7", &5]),
        ["SEARCH tokens USING INDEX tokens_page_key (page_key>?)"],
        "a schedule page walks the paging index from the cursor, with no sort"
    );
    assert_eq!(
        plan(super::budget::THROTTLED, &[]),
        ["SEARCH tokens USING INDEX tokens_throttled (throttles>?)"],
        "the throttled rows are read from their own index, not by reading every row"
    );
}

#[test]
fn the_cleanup_scan_pages_through_every_token_once() {
    let (_dir, mut db) = open();
    let ids: Vec<String> = (0..5)
        .map(|n| {
            let saved = save(&mut db, user(&format!("u{n}"), &format!("r{n}"))).unwrap();
            saved.id().to_owned()
        })
        .collect();
    let policies = crate::policy::Policies {
        default: crate::policy::Limits {
            idle_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        },
        ..Default::default()
    };
    // Saved at 1000; judged at 11000: idle unless used since 10000 (tokens 0, 2, 4 were).
    let recent = |id: &str| (id == ids[0] || id == ids[2] || id == ids[4]).then_some(10_500);
    let (mut ended, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let (page, next) = db
            .ended_sessions(&policies, 11_000, &recent, after, 2)
            .unwrap();
        pages += 1;
        ended.extend(page.into_iter().map(|e| e.id));
        if pages == 1 {
            // A token removed mid-pass: the cursor carries on past it.
            db.apply_batch(&[Write::Delete(ids[2].clone())], 1000)
                .unwrap();
        }
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        pages, 3,
        "two full pages (the deleted token skipped), then an empty last page"
    );
    assert_eq!(ended, vec![ids[1].clone(), ids[3].clone()]);
    let (whole, next) = db
        .ended_sessions(&policies, 11_000, &recent, None, 100)
        .unwrap();
    assert_eq!((whole.len(), next), (2, None));
}

#[test]
fn debug_of_a_write_never_shows_a_secret() {
    let writes = [
        Write::Save(user("u", "SECRET-refresh")),
        Write::Refreshed {
            id: "1".into(),
            read: StoredToken {
                token: user("u", "SECRET-read"),
                meta: Meta::default(),
            },
            update: RefreshUpdate::Succeeded {
                access_token: "SECRET-access".into(),
                expiry_time: "1795330406683".into(),
                refresh_token: Some("SECRET-rotated".into()),
                api_domain: None,
            },
        },
    ];
    for w in &writes {
        let shown = format!("{w:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

#[test]
fn a_token_deleted_and_saved_again_under_its_id_is_a_new_version_to_stale_writers() {
    // A refresh (or a cleanup) judged the first token; meanwhile it was deleted and a
    // client saved another under the same id. Neither stale write may touch the new one.
    let (dir, mut db) = open();
    let mut first = user("first", "r1");
    first.id = s("7");
    let judged = save(&mut db, first).unwrap();
    // Across a restart too: the counter is on disk.
    drop(db);
    let mut db = Db::open(&dir.path().join("sub/tokens.db"), Duration::from_secs(1)).unwrap();
    db.apply_batch(&[Write::Delete("7".into())], 1000).unwrap();
    let mut second = user("second", "r2");
    second.id = s("7");
    save(&mut db, second).unwrap();
    let stale = [
        Write::Refreshed {
            id: "7".into(),
            read: judged.clone(),
            update: RefreshUpdate::Succeeded {
                access_token: "first's new access token".into(),
                expiry_time: "1795330406683".into(),
                refresh_token: None,
                api_domain: None,
            },
        },
        Write::Expire {
            id: "7".into(),
            version: judged.meta.version,
            used_before: i64::MAX,
        },
    ];
    let outcomes = db.apply_batch(&stale, 1000).unwrap();
    assert!(
        matches!(outcomes[0], Ok(Outcome::Superseded { .. })),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Ok(Outcome::Deleted { existed: false, .. })),
        "{outcomes:?}"
    );
    let kept = db.find_by_id("7").unwrap().unwrap();
    assert_eq!(kept.token.user_name, s("second"));
    assert_eq!(kept.token.access_token, s("access-r2"));
}

#[test]
fn the_budget_spending_is_kept_until_it_leaves_the_window() {
    let (_dir, mut db) = open();
    let spend = |at, forget_before| Write::Spend {
        token_hash: 7,
        at,
        forget_before,
    };
    let done = db
        .apply_batch(&[spend(100, 0), spend(200, 0)], 1000)
        .unwrap();
    assert!(done.iter().all(|o| matches!(o, Ok(Outcome::Spent))));
    assert_eq!(db.spent_since(0).unwrap(), vec![(7, 100), (7, 200)]);
    assert_eq!(db.spent_since(150).unwrap(), vec![(7, 200)]);
    // A later spend forgets what is older than its window.
    db.apply_batch(&[spend(300, 150)], 1000).unwrap();
    let left: i64 = db
        .conn
        .query_row("SELECT count(*) FROM refresh_spent", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 2, "the spend at 100 is gone");
    // One dated ahead (the clock was ahead, then set right) is brought back to now, so
    // that it leaves the window in time.
    db.apply_batch(&[spend(10_000, 150)], 1000).unwrap();
    db.apply_batch(&[spend(400, 150)], 1000).unwrap();
    assert_eq!(
        db.spent_since(0).unwrap(),
        vec![(7, 200), (7, 300), (7, 400), (7, 400)]
    );
}

#[test]
fn a_refresh_result_lands_only_on_the_row_it_was_asked_for_with_the_same_credentials() {
    let (_dir, mut db) = open();
    let refreshed = |read: &StoredToken| Write::Refreshed {
        id: read.id().to_owned(),
        read: read.clone(),
        update: RefreshUpdate::Succeeded {
            access_token: "minted".into(),
            expiry_time: "1795330406683".into(),
            refresh_token: None,
            api_domain: None,
        },
    };
    let apply = |db: &mut Db, w: Write, now| db.apply_batch(&[w], now).unwrap().remove(0);
    let read = save(&mut db, user("u", "r1")).unwrap();
    // A client's save that keeps the credentials moves the version, not the result.
    let mut moved = user("u", "r1");
    moved.redirect_url = s("https://example.com/moved");
    apply(&mut db, Write::Save(moved), 1500).unwrap();
    let done = apply(&mut db, refreshed(&read), 1600).unwrap();
    assert!(
        matches!(&done, Outcome::Saved(t) if t.token.access_token == s("minted")),
        "{done:?}"
    );
    // Deleted, and saved again under its id with the same credentials (which a cleanup
    // may have revoked meanwhile): a new row, which the result must not land on.
    let read = db.find_by_id(read.id()).unwrap().unwrap();
    apply(&mut db, Write::Delete(read.id().to_owned()), 2000).unwrap();
    apply(&mut db, Write::Save(read.token.clone()), 2000).unwrap();
    let done = apply(&mut db, refreshed(&read), 2100).unwrap();
    assert!(matches!(done, Outcome::Superseded { .. }), "{done:?}");
}

#[test]
fn a_token_throttled_before_schema_v7_counts_one_throttle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 6;
             INSERT INTO tokens (id, created_at, updated_at, last_error, failures)
             VALUES ('1', 1, 1, 'throttled', 2), ('2', 1, 1, 'timeout', 1), ('3', 1, 1, NULL, 0);",
        )
        .unwrap();
    }
    let db = Db::open(&path, Duration::from_secs(1)).unwrap();
    let throttles = |id: &str| db.find_by_id(id).unwrap().unwrap().meta.throttles;
    assert_eq!((throttles("1"), throttles("2"), throttles("3")), (1, 0, 0));
}
