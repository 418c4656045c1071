//! Cursor pagination for the API's lists and traces (ADR 019).
//!
//! A list route takes `after` (the `next` of the page before; absent for
//! the first page) and `limit` (1 to [`PAGE_MAX`], [`PAGE_DEFAULT`] when
//! absent), and answers `{"items": [...], "next": ...}`. `next` is null on
//! the last page. A cursor is the hex of the last state key the page
//! covered: it stays valid while the chain grows, and entries added after
//! it appear on later pages. A filtering route reads at most
//! [`SCAN_BUDGET`] keys for one page, so a page may hold fewer than
//! `limit` items, even none, and still have a `next`.

use aidledger_storage::{RocksStore, Store};
use aidledger_types::codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::hide_internal;
use crate::problem::Problem;

/// Items on a page when the client does not say.
pub const PAGE_DEFAULT: usize = 100;
/// Most items on one page.
pub const PAGE_MAX: usize = 1000;
/// Most state keys one page request reads while filtering.
pub const SCAN_BUDGET: usize = 10_000;
/// Longest cursor accepted (a state key is at most 256 bytes; a trace
/// cursor holds three).
pub const CURSOR_MAX_CHARS: usize = 2048;

/// One page of a list.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor for the next page (`?after=`); null on the last page.
    pub next: Option<String>,
}

/// A page's bounds as given in the query string.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next` of the page before; absent for the first page.
    pub after: Option<String>,
    /// Items on the page: 1 to 1000, 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

impl PageQuery {
    /// The page size: [`PAGE_DEFAULT`] when absent, refused outside
    /// 1..=[`PAGE_MAX`].
    pub fn limit(&self) -> Result<usize, Problem> {
        page_limit(self.limit, PAGE_DEFAULT, PAGE_MAX)
    }

    /// The key to continue after, checked to lie in `prefix`'s range.
    pub fn after_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, Problem> {
        self.after
            .as_deref()
            .map(|c| cursor_key(c, prefix))
            .transpose()
    }
}

/// A page size as given (`None`: `default`), refused outside 1..=`max`.
/// Lists whose items cost more than a key read (blocks, evaluated plans)
/// pass a smaller `max` than [`PAGE_MAX`].
pub fn page_limit(given: Option<usize>, default: usize, max: usize) -> Result<usize, Problem> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(Problem::new(
            "bad-limit",
            format!("limit {n} is out of range: a page holds 1 to {max} items"),
        )),
    }
}

fn bad_cursor(why: &str) -> Problem {
    Problem::new(
        "bad-cursor",
        format!("{why}: pass the `next` of the page before, unchanged"),
    )
}

/// Decodes one key cursor and checks it belongs to `prefix`'s list.
pub fn cursor_key(cursor: &str, prefix: &[u8]) -> Result<Vec<u8>, Problem> {
    if cursor.len() > CURSOR_MAX_CHARS {
        return Err(bad_cursor("the cursor is too long"));
    }
    let key = hex::decode(cursor).map_err(|_| bad_cursor("the cursor is not hex"))?;
    if key.len() <= prefix.len() || !key.starts_with(prefix) {
        return Err(bad_cursor("the cursor is not from this list"));
    }
    Ok(key)
}

pub fn internal(e: impl std::fmt::Display) -> Problem {
    Problem::new("internal", hide_internal(e))
}

/// Reads one page of the records under `prefix` after `after`, keeping
/// those `keep` accepts: up to `limit` of them, reading at most
/// [`SCAN_BUDGET`] keys. Returns the items and the key to continue after
/// (`None` when the list is done).
pub fn scan<T: DeserializeOwned + Serialize>(
    store: &RocksStore,
    prefix: &[u8],
    after: Option<Vec<u8>>,
    limit: usize,
    mut keep: impl FnMut(&T) -> Result<bool, Problem>,
) -> Result<(Vec<T>, Option<Vec<u8>>), Problem> {
    let mut items = Vec::new();
    let mut last_item: Option<Vec<u8>> = None;
    let mut from = after;
    let mut budget = SCAN_BUDGET;
    loop {
        // An unfiltered list needs one key past the page to know whether
        // it goes on; a filtering one reads in larger steps.
        let n = budget
            .min(limit.saturating_sub(items.len()).saturating_add(1).max(64))
            .clamp(1, 1024);
        let kvs = store
            .state_scan(prefix, from.as_deref(), n)
            .map_err(internal)?;
        let exhausted = kvs.len() < n;
        for (k, v) in kvs {
            if items.len() == limit {
                // There is at least one more key.
                return Ok((items, last_item));
            }
            budget = budget.saturating_sub(1);
            let t: T = codec::decode(&v).map_err(internal)?;
            if keep(&t)? {
                items.push(t);
                last_item = Some(k.clone());
            }
            from = Some(k);
        }
        if exhausted {
            return Ok((items, None));
        }
        if budget == 0 {
            // The budget ran out with keys left: go on from the last read.
            return Ok((items, from));
        }
    }
}

/// One list's position in a compound (trace) cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Start,
    After(Vec<u8>),
    Done,
}

impl Part {
    fn encode(&self) -> String {
        match self {
            Part::Start => String::new(),
            Part::After(k) => hex::encode(k),
            Part::Done => "-".into(),
        }
    }

    fn decode(s: &str, prefix: &[u8]) -> Result<Part, Problem> {
        Ok(match s {
            "" => Part::Start,
            "-" => Part::Done,
            k => Part::After(cursor_key(k, prefix)?),
        })
    }

    pub fn from_next(next: Option<Vec<u8>>) -> Part {
        next.map_or(Part::Done, Part::After)
    }
}

/// A cursor over several lists read in step (a trace's): one [`Part`] per
/// list, joined by `.`. `None` when every list is done.
pub fn encode_parts(parts: &[Part]) -> Option<String> {
    if parts.iter().all(|p| *p == Part::Done) {
        return None;
    }
    Some(parts.iter().map(Part::encode).collect::<Vec<_>>().join("."))
}

/// Decodes a compound cursor for lists with these `prefixes`; no cursor
/// starts every list.
pub fn decode_parts(cursor: Option<&str>, prefixes: &[&[u8]]) -> Result<Vec<Part>, Problem> {
    let Some(c) = cursor else {
        return Ok(vec![Part::Start; prefixes.len()]);
    };
    if c.len() > CURSOR_MAX_CHARS * prefixes.len() {
        return Err(bad_cursor("the cursor is too long"));
    }
    let fields: Vec<&str> = c.split('.').collect();
    if fields.len() != prefixes.len() {
        return Err(bad_cursor("the cursor is not from this trace"));
    }
    fields
        .into_iter()
        .zip(prefixes)
        .map(|(f, p)| Part::decode(f, p))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_outside_the_range_are_refused() {
        let q = |limit| PageQuery { after: None, limit };
        assert_eq!(q(None).limit().unwrap(), PAGE_DEFAULT);
        assert_eq!(q(Some(1)).limit().unwrap(), 1);
        assert_eq!(q(Some(PAGE_MAX)).limit().unwrap(), PAGE_MAX);
        for bad in [0, PAGE_MAX + 1, usize::MAX] {
            assert_eq!(q(Some(bad)).limit().unwrap_err().code, "bad-limit");
        }
    }

    #[test]
    fn a_cursor_must_be_hex_of_a_key_in_the_list() {
        let p = b"program/";
        let ok = hex::encode(b"program/fund");
        assert_eq!(cursor_key(&ok, p).unwrap(), b"program/fund");
        for bad in [
            "zz".to_string(),
            hex::encode(b"program/"),
            hex::encode(b"org/bank"),
            "a".repeat(CURSOR_MAX_CHARS + 2),
        ] {
            assert_eq!(cursor_key(&bad, p).unwrap_err().code, "bad-cursor", "{bad}");
        }
    }

    #[test]
    fn compound_cursors_round_trip_and_refuse_foreign_shapes() {
        let prefixes: [&[u8]; 3] = [b"a/", b"b/", b"c/"];
        let parts = vec![Part::After(b"a/1".to_vec()), Part::Done, Part::Start];
        let c = encode_parts(&parts).unwrap();
        assert_eq!(decode_parts(Some(&c), &prefixes).unwrap(), parts);
        assert_eq!(encode_parts(&[Part::Done, Part::Done]), None);
        assert_eq!(decode_parts(None, &prefixes).unwrap(), vec![Part::Start; 3]);
        for bad in ["", "-.-", "x..", &hex::encode(b"b/1"), "..-.-"] {
            assert!(decode_parts(Some(bad), &prefixes).is_err(), "{bad}");
        }
        // A key from another list in a list's place.
        let swapped = format!("{}..", hex::encode(b"b/1"));
        assert!(decode_parts(Some(&swapped), &prefixes).is_err());
    }
}
