//! The import's plan: what each record's save will do to the daemon's store (insert,
//! update, or nothing), predicted from a snapshot of the stored tokens with the daemon's
//! own matching rules (`Token::lookup`), and applied to the snapshot as it goes, so that
//! records later in the file see the earlier ones. Pure: no I/O, unit-tested here.
//!
//! The daemon stays the authority: a save whose prediction was wrong (another client
//! wrote meanwhile) is still applied by the daemon's rules; only the counts could differ.

use std::collections::HashMap;

use super::fields::Field;
use super::{At, Problems};
use crate::model::{Lookup, Token};

/// What importing one record will do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Insert,
    Update,
    Unchanged,
}

/// Decides what saving `token` does to the indexed store, updates the index as the
/// daemon will, and notes a conflict the daemon would refuse.
pub fn plan(
    index: &mut Index,
    token: &Token,
    at: At,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> Action {
    let Some(i) = index.find(token) else {
        index.add(token.clone());
        return Action::Insert;
    };
    let before = &index.tokens[i];
    let stored_id = before.id.clone().unwrap_or_default();
    // Any client can choose a stored id: one holding a newline must not forge a line of
    // this report.
    let shown = stored_id.escape_debug();
    if let Some(id) = token.id.as_deref().filter(|id| *id != stored_id) {
        let id = id.escape_debug();
        notes.push(format!(
            "{at}: matches stored token {shown} (same user or tokens), which keeps its id; the file's id {id} is not used"
        ));
    }
    let mut after = before.clone();
    after.merge_from(token.clone());
    if after == *before {
        return Action::Unchanged;
    }
    if let Some(holder) = after
        .user_name
        .as_deref()
        .and_then(|u| index.get(Field::UserName, u))
    {
        if holder != i {
            let other = index.tokens[holder].id.clone().unwrap_or_default();
            let other = other.escape_debug();
            problems.push(
                at,
                format!("its id is stored token {shown}, but its user_name belongs to stored token {other}: tokend would refuse it"),
            );
            return Action::Unchanged;
        }
    }
    // Matched by id alone, but the stored token is another user's: the save would give
    // that user's token this record's user and credentials. Two applications' stores
    // both number their ids from 1, so importing a second one collides at once.
    let other_user = matches!(
        (before.user_name.as_deref(), token.user_name.as_deref()),
        (Some(theirs), Some(ours)) if theirs != ours
    );
    if other_user && token.id.as_deref() == Some(stored_id.as_str()) {
        problems.push(
            at,
            format!("its id {shown} is stored for another user, whose tokens saving it would overwrite (ids from another application's store?); clear its id in the file to import it under a new one"),
        );
        return Action::Unchanged;
    }
    index.replace(i, after);
    Action::Update
}

/// The fields a lookup can go by, each with its own map in `Index`.
pub const KEYS: [Field; 5] = [
    Field::Id,
    Field::UserName,
    Field::AccessToken,
    Field::GrantToken,
    Field::RefreshToken,
];

/// The stored tokens an import could touch, indexed the way the daemon looks them up.
#[derive(Default)]
pub struct Index {
    tokens: Vec<Token>,
    /// For each field of `KEYS`, value → position in `tokens` (the first one holding it).
    by: [HashMap<String, usize>; KEYS.len()],
}

impl Index {
    fn slot(field: Field) -> usize {
        KEYS.iter().position(|k| *k == field).unwrap_or_default()
    }

    pub fn get(&self, field: Field, value: &str) -> Option<usize> {
        self.by[Index::slot(field)].get(value).copied()
    }

    pub fn add(&mut self, token: Token) {
        let i = self.tokens.len();
        for field in KEYS {
            if let Some(v) = field.get(&token) {
                self.by[Index::slot(field)].entry(v.to_owned()).or_insert(i);
            }
        }
        self.tokens.push(token);
    }

    pub fn replace(&mut self, i: usize, token: Token) {
        for field in KEYS {
            let map = &mut self.by[Index::slot(field)];
            if let Some(old) = field.get(&self.tokens[i]) {
                if map.get(old) == Some(&i) {
                    map.remove(old);
                }
            }
            if let Some(v) = field.get(&token) {
                map.entry(v.to_owned()).or_insert(i);
            }
        }
        self.tokens[i] = token;
    }

    /// The daemon's `save_token` match: by id, else by the SDK's rules (`Token::lookup`).
    pub fn find(&self, t: &Token) -> Option<usize> {
        if let Some(i) = t.id.as_deref().and_then(|id| self.get(Field::Id, id)) {
            return Some(i);
        }
        match t.lookup()? {
            Lookup::UserName(u) => self.get(Field::UserName, u),
            Lookup::AccessToken(a) => self.get(Field::AccessToken, a),
            Lookup::Credentials {
                grant_token,
                refresh_token,
            } => grant_token
                .and_then(|g| self.get(Field::GrantToken, g))
                .or_else(|| refresh_token.and_then(|r| self.get(Field::RefreshToken, r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, user: &str, refresh: &str) -> Token {
        Token {
            id: Some(id.into()).filter(|s: &String| !s.is_empty()),
            user_name: Some(user.into()).filter(|s: &String| !s.is_empty()),
            client_id: Some("c".into()),
            client_secret: Some("s".into()),
            refresh_token: Some(refresh.into()),
            ..Token::default()
        }
    }

    fn run(index: &mut Index, token: &Token) -> (Action, Problems, Vec<String>) {
        let (mut problems, mut notes) = (Problems::default(), Vec::new());
        let action = plan(index, token, At::Line(2), &mut problems, &mut notes);
        (action, problems, notes)
    }

    fn stored(tokens: &[Token]) -> Index {
        let mut index = Index::default();
        for token in tokens {
            index.add(token.clone());
        }
        index
    }

    #[test]
    fn new_then_same_then_changed() {
        let mut index = Index::default();
        let token = t("1", "u", "r");
        assert_eq!(run(&mut index, &token).0, Action::Insert);
        assert_eq!(run(&mut index, &token).0, Action::Unchanged);
        let mut newer = token.clone();
        newer.access_token = Some("a".into());
        assert_eq!(run(&mut index, &newer).0, Action::Update);
        assert_eq!(run(&mut index, &newer).0, Action::Unchanged);
        // A record that leaves a field empty keeps the stored value, as a save does.
        assert_eq!(run(&mut index, &token).0, Action::Unchanged);
    }

    #[test]
    fn matches_like_the_daemon_by_id_then_user_then_grant_then_refresh() {
        let mut index = stored(&[t("1", "u1", "r1"), t("2", "", "r2")]);
        // By user, under another id: the stored id stays, and a note says so.
        let (action, _, notes) = run(&mut index, &t("9", "u1", "r1"));
        assert_eq!(action, Action::Unchanged);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("stored token 1"), "{notes:?}");
        // By refresh token when there is no user_name.
        let mut by_refresh = t("", "", "r2");
        by_refresh.access_token = Some("a2".into());
        assert_eq!(run(&mut index, &by_refresh).0, Action::Update);
        assert_eq!(index.tokens[1].access_token.as_deref(), Some("a2"));
    }

    #[test]
    fn a_stored_id_holding_a_newline_cannot_forge_a_line_of_the_report() {
        let forged = "7\nimported 999: all tokens verified OK";
        let mut index = stored(&[t(forged, "u1", "r1")]);
        let (_, _, notes) = run(&mut index, &t("9", "u1", "r1"));
        assert_eq!(notes.len(), 1);
        assert!(!notes[0].contains('\n'), "{notes:?}");
        assert!(
            notes[0].contains("stored token 7\\nimported 999"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_changed_refresh_token_is_found_by_its_new_value_only() {
        let mut index = stored(&[t("1", "", "old")]);
        assert_eq!(run(&mut index, &t("1", "", "new")).0, Action::Update);
        assert_eq!(index.get(Field::RefreshToken, "old"), None);
        assert_eq!(index.get(Field::RefreshToken, "new"), Some(0));
    }

    #[test]
    fn an_id_stored_for_another_user_is_a_problem_not_an_update() {
        // Application A's tokens are stored as 1 and 2; application B's file numbers its
        // own users from 1 too.
        let mut index = stored(&[t("1", "a1", "ra1"), t("2", "a2", "ra2")]);
        let (action, problems, _) = run(&mut index, &t("1", "b1", "rb1"));
        assert_eq!(action, Action::Unchanged);
        assert_eq!(problems.listed.len(), 1);
        assert!(
            problems.listed[0].message.contains("another user"),
            "{}",
            problems.listed[0].message
        );
        assert_eq!(
            index.tokens[0].user_name.as_deref(),
            Some("a1"),
            "not applied"
        );
        assert_eq!(index.tokens[0].refresh_token.as_deref(), Some("ra1"));
        // Without its id, the same record is a new token.
        assert_eq!(run(&mut index, &t("", "b1", "rb1")).0, Action::Insert);
    }

    #[test]
    fn a_user_name_held_by_another_token_is_a_problem() {
        let mut index = stored(&[t("1", "u1", "r1"), t("2", "u2", "r2")]);
        let (_, problems, _) = run(&mut index, &t("1", "u2", "r1"));
        assert_eq!(problems.listed.len(), 1);
        assert!(problems.listed[0].message.contains("stored token 2"));
        assert_eq!(
            index.tokens[0].user_name.as_deref(),
            Some("u1"),
            "not applied"
        );
    }
}
