//! The part of the store's memory that the connections reach without a message: the
//! last uses not yet written, and tokens by id as last read, already encoded.
//!
//! The cache is there for `find_token_by_id`: a hit is answered on the connection's own
//! task, with no mailbox, no SQLite and no JSON encoding, which took a find at 64
//! clients from ~13 to ~4.3 µs of the daemon's one core (benches/README.md). It can be
//! shared without a lock because the connections run on the store's thread.
//!
//! It never answers with something older than the store would: only the store fills
//! it, from a client's read; every committed write forgets the tokens it changed before
//! its writer is answered; flushing the uses forgets the tokens whose `last_used_at` it
//! wrote. (And a connection uses it only while none of its earlier requests waits on an
//! actor: `connection.rs`.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::clock::Clock;
use crate::db::Outcome;
use crate::model::StoredToken;

/// Tokens the cache holds at most, and their JSON's bytes at most. At either cap it
/// starts over, which is simpler than evicting one by one and at worst costs a miss
/// what a lookup cost without a cache. A Zoho token's JSON is ~0.6 KB: 16,384 of them
/// fit in the bytes, and the daemon then takes ~14 MB more (the `scale` bench measures
/// it with the cache full), within what the 1M-token memory goal leaves.
pub const CAPACITY: usize = 16_384;
const MAX_BYTES: usize = 10 << 20;
/// A token whose JSON is longer is not kept: a client can make one as long as its
/// requests may be, and a handful of those would otherwise fill the bytes alone.
const MAX_TOKEN_BYTES: usize = 4096;

#[derive(Clone)]
pub struct Shared {
    inner: Rc<RefCell<Inner>>,
    clock: Clock,
}

#[derive(Default)]
struct Inner {
    /// Each token's JSON as `find_token_by_id` answers it, by id. (`Arc`, not `Rc`:
    /// it travels in actix replies, which must be `Send`.)
    tokens: HashMap<String, Arc<[u8]>>,
    /// The bytes of JSON in `tokens`.
    bytes: usize,
    /// Last use per token id since the last flush. Lookups record here, not on disk, so
    /// that the lookup on every SDK API call stays a read; the store writes them in one
    /// transaction every `cleanup.last_used_flush`.
    uses: HashMap<String, i64>,
}

impl Shared {
    pub(super) fn new(clock: Clock) -> Shared {
        Shared {
            inner: Rc::default(),
            clock,
        }
    }

    /// A client's lookup by id, if the cache holds the token: its JSON, the use
    /// recorded.
    pub fn find_by_id(&self, id: &str) -> Option<Arc<[u8]>> {
        let mut inner = self.inner.borrow_mut();
        let found = inner.tokens.get(id).cloned()?;
        inner.record_use(id, self.clock.now_ms());
        Some(found)
    }

    /// A client used token `id` now.
    pub(super) fn record_use(&self, id: &str) {
        self.inner.borrow_mut().record_use(id, self.clock.now_ms());
    }

    /// `token`'s JSON, as a client's lookup just read it from the database; kept for
    /// the next lookup unless it is too long. Encoded once, for both. (Encoding cannot
    /// fail: a token's map keys are all strings.)
    pub(super) fn remember(&self, token: &StoredToken) -> serde_json::Result<Arc<[u8]>> {
        let mut inner = self.inner.borrow_mut();
        if let Some(json) = inner.tokens.get(token.id()) {
            return Ok(json.clone());
        }
        let json: Arc<[u8]> = serde_json::to_vec(token)?.into();
        if json.len() > MAX_TOKEN_BYTES {
            return Ok(json);
        }
        if inner.tokens.len() >= CAPACITY || inner.bytes + json.len() > MAX_BYTES {
            inner.clear();
        }
        inner.bytes += json.len();
        inner.tokens.insert(token.id().to_owned(), json.clone());
        Ok(json)
    }

    /// Forgets what a committed write changed.
    pub(super) fn forget(&self, outcome: &Outcome) {
        let mut inner = self.inner.borrow_mut();
        match outcome {
            Outcome::Saved(t) => inner.remove(t.id()),
            Outcome::Deleted { id, .. } => inner.remove(id),
            Outcome::DeletedAll(_) => inner.clear(),
            Outcome::Superseded { .. } | Outcome::Spent => {}
        }
    }

    /// Forgets every token: after a commit that failed, whatever it was.
    pub(super) fn forget_all(&self) {
        self.inner.borrow_mut().clear();
    }

    /// The last use of `id` not yet written, if any.
    pub(super) fn last_use(&self, id: &str) -> Option<i64> {
        self.inner.borrow().uses.get(id).copied()
    }

    /// The uses to write, taken out; the tokens they belong to are forgotten, since
    /// their `last_used_at` is about to change.
    pub(super) fn take_uses(&self) -> Vec<(String, i64)> {
        let mut inner = self.inner.borrow_mut();
        let uses: Vec<(String, i64)> = inner.uses.drain().collect();
        for (id, _) in &uses {
            inner.remove(id);
        }
        uses
    }
}

impl Inner {
    fn remove(&mut self, id: &str) {
        if let Some(json) = self.tokens.remove(id) {
            self.bytes -= json.len();
        }
    }

    fn clear(&mut self) {
        self.tokens.clear();
        self.bytes = 0;
    }

    fn record_use(&mut self, id: &str, now: i64) {
        // The hot tokens are already in the map: update in place, no key allocation.
        match self.uses.get_mut(id) {
            Some(at) => *at = now,
            None => {
                self.uses.insert(id.to_owned(), now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Meta, Token};

    fn stored(id: &str, access: &str) -> StoredToken {
        StoredToken {
            token: Token {
                id: Some(id.into()),
                access_token: Some(access.into()),
                ..Token::default()
            },
            meta: Meta::default(),
        }
    }

    fn cached(shared: &Shared, id: &str) -> Option<serde_json::Value> {
        shared
            .find_by_id(id)
            .map(|json| serde_json::from_slice(&json).unwrap())
    }

    #[test]
    fn a_remembered_token_is_answered_as_stored_until_a_write_changes_it() {
        let shared = Shared::new(Clock::system());
        assert_eq!(cached(&shared, "1"), None);
        let t = stored("1", "1000.a");
        shared.remember(&t).unwrap();
        assert_eq!(
            cached(&shared, "1"),
            Some(serde_json::to_value(&t).unwrap())
        );
        shared.forget(&Outcome::Superseded { id: "1".into() });
        assert!(
            cached(&shared, "1").is_some(),
            "a superseded write changed nothing"
        );
        shared.forget(&Outcome::Saved(stored("1", "1000.b")));
        assert_eq!(cached(&shared, "1"), None, "a save forgets the old one");
        shared.remember(&t).unwrap();
        shared.forget(&Outcome::Deleted {
            id: "1".into(),
            existed: true,
        });
        assert_eq!(cached(&shared, "1"), None);
        shared.remember(&t).unwrap();
        shared.remember(&stored("2", "1000.c")).unwrap();
        shared.forget(&Outcome::DeletedAll(2));
        assert_eq!((cached(&shared, "1"), cached(&shared, "2")), (None, None));
    }

    #[test]
    fn a_hit_is_a_use_and_writing_the_uses_forgets_their_tokens() {
        let shared = Shared::new(Clock::system());
        shared.remember(&stored("1", "1000.a")).unwrap();
        shared.remember(&stored("2", "1000.b")).unwrap();
        assert_eq!(shared.last_use("1"), None, "remembering is not a use");
        assert!(shared.find_by_id("1").is_some());
        assert!(shared.last_use("1").is_some(), "a hit is a client's use");
        let taken = shared.take_uses();
        assert_eq!(taken.len(), 1);
        assert_eq!(shared.last_use("1"), None);
        assert_eq!(cached(&shared, "1"), None, "its last_used_at is changing");
        assert!(cached(&shared, "2").is_some(), "an unused token is kept");
    }

    #[test]
    fn at_capacity_the_cache_starts_over() {
        let shared = Shared::new(Clock::system());
        for n in 0..CAPACITY {
            shared.remember(&stored(&n.to_string(), "1000.a")).unwrap();
        }
        assert!(shared.find_by_id("0").is_some());
        shared.remember(&stored("one more", "1000.a")).unwrap();
        assert!(shared.find_by_id("0").is_none());
        assert!(shared.find_by_id("one more").is_some());
        assert_eq!(shared.inner.borrow().tokens.len(), 1);
    }

    #[test]
    fn its_bytes_are_capped_too_and_a_long_token_is_not_kept() {
        let shared = Shared::new(Clock::system());
        let long = stored("long", &"x".repeat(MAX_TOKEN_BYTES));
        let json = shared.remember(&long).unwrap();
        assert_eq!(
            &*json,
            &serde_json::to_vec(&long).unwrap()[..],
            "encoded, not kept"
        );
        assert!(shared.find_by_id("long").is_none());
        let big = "x".repeat(MAX_TOKEN_BYTES / 2);
        // Ids of one length, so that every token's JSON is as long.
        let fit = MAX_BYTES / serde_json::to_vec(&stored("00000", &big)).unwrap().len();
        for n in 0..fit {
            shared.remember(&stored(&format!("{n:05}"), &big)).unwrap();
        }
        assert!(shared.find_by_id("00000").is_some());
        shared.remember(&stored("over0", &big)).unwrap();
        assert!(
            shared.find_by_id("00000").is_none(),
            "started over at the byte cap"
        );
        shared.forget(&Outcome::Saved(stored("over0", "")));
        let inner = shared.inner.borrow();
        assert_eq!((inner.tokens.len(), inner.bytes), (0, 0));
    }
}
