//! The readable text form of conditions, used by the CLI and in JSON.
//!
//! Grammar (whitespace is allowed between any two tokens):
//!
//! ```text
//! cond     = "all" "(" cond { "," cond } ")"
//!          | "any" "(" cond { "," cond } ")"
//!          | "not" "(" cond ")"
//!          | "after" "(" time ")" | "before" "(" time ")"
//!          | "approvals" "(" int "," "of" ":" "[" org { "," org } "]" ")"
//!          | "attested" "(" slug "," "by" ":" org "," "subject" ":" subject ")"
//!          | "attested_value" "(" slug "," "by" ":" org "," "subject" ":" subject
//!            "," "value" ":" value ")"                      (plans@4 and later)
//!          | "released" "(" slug ")" | "settled" "(" slug ")"
//!          | "no_open_anomaly" "(" subject ")"
//! time     = YYYY-MM-DD | YYYY-MM-DDTHH:MM:SSZ | integer milliseconds
//! subject  = "app:" slug | "hh:" 64 hex digits | "release:" int
//! value    = "code:" slug | "hash:" 64 hex digits
//! ```
//!
//! The printer emits exactly this syntax with `", "` separators, dates as
//! `YYYY-MM-DD` at midnight, `YYYY-MM-DDTHH:MM:SSZ` on whole seconds and
//! milliseconds otherwise, so `parse(print(c)) == c` for every condition.

use aidledger_types::{Hash, OrgId, Slug, Timestamp};

use crate::condition::{Condition, MAX_DEPTH};
use crate::model::{AttestValue, Subject};
use crate::ContractError;

/// Longest condition text accepted.
pub const MAX_TEXT_LEN: usize = 4096;

/// Renders a condition in the text syntax.
pub fn print(c: &Condition) -> String {
    let mut s = String::new();
    print_into(c, &mut s);
    s
}

fn print_time(t: Timestamp) -> String {
    // Year 10000 starts here; dates beyond it print as milliseconds.
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if t.0 >= YEAR_10000_MS || !t.0.is_multiple_of(1000) {
        t.0.to_string()
    } else if t.0.is_multiple_of(aidledger_types::time::MS_PER_DAY) {
        t.date_string()
    } else {
        // iso8601 gives ".000Z" millis; whole seconds drop them.
        let iso = t.iso8601();
        format!("{}Z", &iso[..iso.len() - 5])
    }
}

pub fn print_subject(s: &Subject) -> String {
    s.to_string()
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn print_into(c: &Condition, out: &mut String) {
    match c {
        Condition::All(cs) | Condition::Any(cs) => {
            out.push_str(if matches!(c, Condition::All(_)) {
                "all("
            } else {
                "any("
            });
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print_into(c, out);
            }
            out.push(')');
        }
        Condition::Not(c) => {
            out.push_str("not(");
            print_into(c, out);
            out.push(')');
        }
        Condition::After(t) => out.push_str(&format!("after({})", print_time(*t))),
        Condition::Before(t) => out.push_str(&format!("before({})", print_time(*t))),
        Condition::Approvals { k, of } => out.push_str(&format!(
            "approvals({k}, of: [{}])",
            join(of.iter().map(|o| o.to_string()))
        )),
        Condition::Attested { claim, by, subject } => {
            out.push_str(&format!("attested({claim}, by: {by}, subject: {subject})"))
        }
        Condition::Released(t) => out.push_str(&format!("released({t})")),
        Condition::Settled(t) => out.push_str(&format!("settled({t})")),
        Condition::NoOpenAnomaly(s) => out.push_str(&format!("no_open_anomaly({s})")),
        Condition::AttestedValue {
            claim,
            by,
            subject,
            value,
        } => out.push_str(&format!(
            "attested_value({claim}, by: {by}, subject: {subject}, value: {value})"
        )),
    }
}

/// Parses the text syntax. Errors name the byte offset.
pub fn parse(text: &str) -> Result<Condition, ContractError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ContractError::ConditionSyntax {
            pos: MAX_TEXT_LEN,
            reason: format!(
                "condition is {} bytes, the limit is {MAX_TEXT_LEN}",
                text.len()
            ),
        });
    }
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    let c = p.cond(1)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text after the condition"));
    }
    // The canonical text adds a space after every comma, so a condition
    // written tightly can print longer than it was given. Refusing it here
    // keeps `parse(print(c)) == c` for everything `parse` returns (found by
    // the condition_text fuzz target).
    let printed = print(&c).len();
    if printed > MAX_TEXT_LEN {
        return Err(ContractError::ConditionSyntax {
            pos: text.len(),
            reason: format!(
                "condition is {printed} bytes written canonically, the limit is {MAX_TEXT_LEN}"
            ),
        });
    }
    Ok(c)
}

/// Parses a subject: `app:<slug>`, `hh:<64 hex>` or `release:<n>`.
pub fn parse_subject(s: &str) -> Result<Subject, String> {
    if let Some(rest) = s.strip_prefix("app:") {
        Slug::new(rest)
            .map(Subject::Application)
            .map_err(|e| e.to_string())
    } else if let Some(rest) = s.strip_prefix("hh:") {
        Hash::from_hex(rest)
            .map(Subject::Household)
            .map_err(|e| e.to_string())
    } else if let Some(rest) = s.strip_prefix("release:") {
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?}: release number expected"));
        }
        rest.parse()
            .map(Subject::Release)
            .map_err(|e| format!("{s:?}: {e}"))
    } else {
        Err(format!(
            "{s:?}: expected app:<id>, hh:<64 hex> or release:<n>"
        ))
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> ContractError {
        ContractError::ConditionSyntax {
            pos: self.pos,
            reason: reason.into(),
        }
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), ContractError> {
        self.ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", c as char)))
        }
    }

    fn peek_is(&mut self, c: u8) -> bool {
        self.ws();
        self.s.get(self.pos) == Some(&c)
    }

    /// A keyword: lowercase letters and '_'.
    fn word(&mut self) -> &str {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_lowercase() || self.s[self.pos] == b'_')
        {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    /// An atom: a run of characters that can appear in slugs, times and
    /// subjects. Returns it with its starting offset.
    fn atom(&mut self, what: &str) -> Result<(usize, String), ContractError> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() {
            let b = self.s[self.pos];
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.err(format!("expected {what}")));
        }
        let s = std::str::from_utf8(&self.s[start..self.pos])
            .unwrap_or("")
            .to_string();
        Ok((start, s))
    }

    fn label(&mut self, name: &str) -> Result<(), ContractError> {
        let at = self.pos;
        let w = self.word().to_string();
        if w != name {
            self.pos = at;
            self.ws();
            return Err(self.err(format!("expected '{name}:'")));
        }
        self.expect(b':')
    }

    fn slug(&mut self, what: &str) -> Result<Slug, ContractError> {
        let (at, s) = self.atom(what)?;
        Slug::new(s).map_err(|e| ContractError::ConditionSyntax {
            pos: at,
            reason: e.to_string(),
        })
    }

    fn org(&mut self) -> Result<OrgId, ContractError> {
        let (at, s) = self.atom("an organisation id")?;
        OrgId::new(s).map_err(|e| ContractError::ConditionSyntax {
            pos: at,
            reason: e.to_string(),
        })
    }

    fn time(&mut self) -> Result<Timestamp, ContractError> {
        let (at, s) = self.atom("a time")?;
        Timestamp::parse(&s).map_err(|e| ContractError::ConditionSyntax {
            pos: at,
            reason: e.to_string(),
        })
    }

    fn subject(&mut self) -> Result<Subject, ContractError> {
        let (at, s) = self.atom("a subject")?;
        parse_subject(&s).map_err(|reason| ContractError::ConditionSyntax { pos: at, reason })
    }

    /// `claim, by: org, subject: s`, shared by `attested` and
    /// `attested_value`.
    fn attestation(&mut self) -> Result<(Slug, OrgId, Subject), ContractError> {
        let claim = self.slug("a claim")?;
        self.expect(b',')?;
        self.label("by")?;
        let by = self.org()?;
        self.expect(b',')?;
        self.label("subject")?;
        let subject = self.subject()?;
        Ok((claim, by, subject))
    }

    fn cond(&mut self, depth: usize) -> Result<Condition, ContractError> {
        self.ws();
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than the limit of {MAX_DEPTH}")));
        }
        let at = self.pos;
        let w = self.word().to_string();
        self.expect(b'(')?;
        let c = match w.as_str() {
            "all" | "any" => {
                let mut cs = vec![self.cond(depth + 1)?];
                while self.peek_is(b',') {
                    self.pos += 1;
                    cs.push(self.cond(depth + 1)?);
                }
                if cs.len() > crate::condition::MAX_CHILDREN {
                    return Err(ContractError::ConditionSyntax {
                        pos: at,
                        reason: format!(
                            "{w} has {} children, the limit is {}",
                            cs.len(),
                            crate::condition::MAX_CHILDREN
                        ),
                    });
                }
                if w == "all" {
                    Condition::All(cs)
                } else {
                    Condition::Any(cs)
                }
            }
            "not" => Condition::Not(Box::new(self.cond(depth + 1)?)),
            "after" => Condition::After(self.time()?),
            "before" => Condition::Before(self.time()?),
            "approvals" => {
                let (kat, k) = self.atom("a number of approvals")?;
                let k: u32 = k.parse().map_err(|_| ContractError::ConditionSyntax {
                    pos: kat,
                    reason: format!("{k:?} is not a number"),
                })?;
                self.expect(b',')?;
                self.label("of")?;
                self.expect(b'[')?;
                let mut of = vec![self.org()?];
                while self.peek_is(b',') {
                    self.pos += 1;
                    of.push(self.org()?);
                }
                self.expect(b']')?;
                Condition::Approvals { k, of }
            }
            "attested" => {
                let (claim, by, subject) = self.attestation()?;
                Condition::Attested { claim, by, subject }
            }
            "attested_value" => {
                let (claim, by, subject) = self.attestation()?;
                self.expect(b',')?;
                self.label("value")?;
                let (vat, v) = self.atom("a value (code:<slug> or hash:<64 hex>)")?;
                let value = AttestValue::parse(&v)
                    .map_err(|reason| ContractError::ConditionSyntax { pos: vat, reason })?;
                Condition::AttestedValue {
                    claim,
                    by,
                    subject,
                    value,
                }
            }
            "released" => Condition::Released(self.slug("a tranche id")?),
            "settled" => Condition::Settled(self.slug("a tranche id")?),
            "no_open_anomaly" => Condition::NoOpenAnomaly(self.subject()?),
            other => {
                return Err(ContractError::ConditionSyntax {
                    pos: at,
                    reason: format!(
                        "unknown condition {other:?}: expected all, any, not, after, before, approvals, attested, attested_value, released, settled or no_open_anomaly"
                    ),
                })
            }
        };
        self.expect(b')')?;
        // The tree is bounded in nodes as well as depth; checking here gives
        // the author a parse error instead of a later rejection.
        let n = c.node_count();
        if n > crate::condition::MAX_NODES {
            return Err(ContractError::ConditionSyntax {
                pos: at,
                reason: format!("{n} nodes, the limit is {}", crate::condition::MAX_NODES),
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_example_parses_and_prints_back() {
        let text = "all(after(2026-03-01), attested(construction-phase-1-complete, by: county-unit, subject: app:village-road), approvals(2, of: [poverty-office, dev-bank]))";
        let c = parse(text).unwrap();
        assert_eq!(print(&c), text);
        assert_eq!(c.node_count(), 4);
    }

    #[test]
    fn errors_name_the_position() {
        let e = parse("all(after(2026-02-30))").unwrap_err();
        assert!(
            matches!(e, ContractError::ConditionSyntax { pos: 10, .. }),
            "{e}"
        );
        let e = parse("sometime(1)").unwrap_err();
        assert!(e.to_string().contains("unknown condition"), "{e}");
        let e = parse("after(1) x").unwrap_err();
        assert!(
            matches!(e, ContractError::ConditionSyntax { pos: 9, .. }),
            "{e}"
        );
        let deep = "not(".repeat(20) + "after(1)" + &")".repeat(20);
        assert!(parse(&deep).unwrap_err().to_string().contains("deeper"));
        assert!(parse(&"x".repeat(MAX_TEXT_LEN + 1)).is_err());
        assert!(parse("approvals(2, of: [])").is_err());
        assert!(parse("no_open_anomaly(hh:zz)").is_err());
    }

    #[test]
    fn times_print_in_the_shortest_exact_form() {
        assert_eq!(print(&Condition::After(Timestamp(0))), "after(1970-01-01)");
        assert_eq!(
            print(&Condition::After(Timestamp(1000))),
            "after(1970-01-01T00:00:01Z)"
        );
        assert_eq!(print(&Condition::After(Timestamp(1001))), "after(1001)");
    }
}
