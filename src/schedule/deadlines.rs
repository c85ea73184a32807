//! Every token's next refresh time, ordered, with one wake-up for the earliest: O(log n)
//! to set, move or cancel one.
//!
//! A million tokens make a million entries, so each is small. An id is held as a number:
//! tokend's own ids are decimal numbers, kept as the number itself (8 bytes, nothing to
//! allocate); any other id (an imported one) is given a number of its own, from `NAMED`
//! up, for as long as it is scheduled. Held as shared strings, the ids were a third of
//! the schedule's memory.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// Numbers from here up stand for ids that are not canonical decimal numbers below it.
const NAMED: u64 = 1 << 63;

#[derive(Debug)]
pub struct Deadlines {
    by_time: BTreeSet<(i64, u64)>,
    by_key: HashMap<u64, i64>,
    /// The ids that are not numbers, and the numbers standing for them, both ways.
    named: HashMap<Rc<str>, u64>,
    names: HashMap<u64, Rc<str>>,
    next_name: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
            named: HashMap::new(),
            names: HashMap::new(),
            next_name: NAMED,
        }
    }
}

/// `id` as a number, if it is one written the one way (no sign, no leading zero) and
/// below `NAMED`: then the number alone gives the id back.
fn number(id: &str) -> Option<u64> {
    let canonical = !id.is_empty()
        && id.len() <= 19
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id == "0" || !id.starts_with('0'));
    canonical
        .then(|| id.parse().ok())
        .flatten()
        .filter(|&n| n < NAMED)
}

impl Deadlines {
    pub fn set(&mut self, id: &str, at: i64) {
        let key = match self.key(id) {
            Some(key) => key,
            None => self.name(id),
        };
        if let Some(old) = self.by_key.insert(key, at) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((at, key));
    }

    /// Room for `n` more ids. Sizing the index once, before loading, spares the
    /// doublings on the way: at 1M tokens their freed tables (~50 MB) stayed resident.
    pub fn reserve(&mut self, n: usize) {
        self.by_key.reserve(n);
    }

    pub fn cancel(&mut self, id: &str) {
        let Some(key) = self.key(id) else {
            return;
        };
        if let Some(at) = self.by_key.remove(&key) {
            self.by_time.remove(&(at, key));
        }
        self.forget(key);
    }

    pub fn clear(&mut self) {
        self.by_time.clear();
        self.by_key.clear();
        self.named.clear();
        self.names.clear();
    }

    pub fn get(&self, id: &str) -> Option<i64> {
        self.by_key.get(&self.key(id)?).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<i64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest token whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: i64) -> Option<String> {
        if self.next()? > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        let id = match self.names.get(&key) {
            Some(name) => name.to_string(),
            None => key.to_string(),
        };
        self.forget(key);
        Some(id)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The number `id` is held as, if it is scheduled (or is a number).
    fn key(&self, id: &str) -> Option<u64> {
        number(id).or_else(|| self.named.get(id).copied())
    }

    /// A number of its own for `id`, which is not one.
    fn name(&mut self, id: &str) -> u64 {
        let key = self.next_name;
        self.next_name += 1;
        let name: Rc<str> = Rc::from(id);
        self.named.insert(name.clone(), key);
        self.names.insert(key, name);
        key
    }

    /// Drops the name of an id no longer scheduled.
    fn forget(&mut self, key: u64) {
        if let Some(name) = self.names.remove(&key) {
            self.named.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_only_while_its_id_is_scheduled() {
        let mut d = Deadlines::default();
        d.set("abc", 1);
        d.set("abc", 2);
        d.set("007", 3);
        assert_eq!((d.named.len(), d.names.len()), (2, 2), "one name per id");
        d.cancel("abc");
        d.cancel("never-scheduled");
        assert_eq!(d.pop_due(10).as_deref(), Some("007"));
        assert!(d.named.is_empty() && d.names.is_empty());
        d.set("xyz", 1);
        d.clear();
        assert!(d.named.is_empty() && d.names.is_empty());
    }
}
