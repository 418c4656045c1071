//! Parsers for command-line values. Each one gives a one-line reason, so a
//! bad value fails before anything is sent to a node.

use std::path::Path;

use aidledger_contracts::condition_text;
use aidledger_contracts::model::{AttestValue, Recipient, Subject};
use aidledger_contracts::Condition;
use aidledger_types::{Amount, Hash, OrgId, PublicKey, Role, Slug, Timestamp};
use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::usage;

/// Most fractional digits any program may use.
pub const MAX_DECIMALS: u8 = 8;

/// A decimal amount as typed (`1250.00`), checked for shape; converted to
/// minor units once the program's decimals are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal(pub String);

impl Decimal {
    /// Minor units for a currency with `decimals` fractional digits.
    pub fn to_amount(&self, decimals: u8) -> Result<Amount> {
        Amount::parse_decimal(&self.0, u32::from(decimals)).map_err(|e| {
            usage(format!(
                "{e} (the program's currency has {decimals} decimal places)"
            ))
        })
    }
}

pub fn decimal(s: &str) -> Result<Decimal, String> {
    // Shape check only: digits with at most MAX_DECIMALS decimals.
    Amount::parse_decimal(s, u32::from(MAX_DECIMALS)).map_err(|e| e.to_string())?;
    Ok(Decimal(s.trim().to_string()))
}

pub fn slug(s: &str) -> Result<Slug, String> {
    Slug::new(s).map_err(|e| e.to_string())
}

pub fn org(s: &str) -> Result<OrgId, String> {
    OrgId::new(s).map_err(|e| e.to_string())
}

pub fn region(s: &str) -> Result<aidledger_types::RegionCode, String> {
    aidledger_types::RegionCode::new(s).map_err(|e| e.to_string())
}

pub fn text(s: &str) -> Result<aidledger_types::Text, String> {
    aidledger_types::Text::new(s).map_err(|e| e.to_string())
}

pub fn currency(s: &str) -> Result<aidledger_types::Currency, String> {
    aidledger_types::Currency::new(s).map_err(|e| e.to_string())
}

pub fn chain_id(s: &str) -> Result<aidledger_types::ChainId, String> {
    aidledger_types::ChainId::new(s).map_err(|e| e.to_string())
}

/// 64 hex characters (a household id or another SHA-256).
pub fn hash(s: &str) -> Result<Hash, String> {
    Hash::from_hex(s.trim()).map_err(|e| e.to_string())
}

pub fn public_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s.trim()).map_err(|e| e.to_string())
}

/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` or milliseconds.
pub fn time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

pub fn role(s: &str) -> Result<Role, String> {
    Role::parse(s.trim()).map_err(|e| e.to_string())
}

/// A clap `ValueEnum` mirroring a contract enum the CLI does not own: the
/// accepted values (kebab-case, as in JSON) are listed in `--help`, in
/// errors and in shell completions, and the conversions both ways are
/// exhaustive matches, so a new variant does not compile until it is here.
macro_rules! value_enum {
    ($(#[$m:meta])* $arg:ident => $ty:path { $($v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
        pub enum $arg {
            $($v),+
        }
        impl From<$arg> for $ty {
            fn from(a: $arg) -> $ty {
                match a {
                    $($arg::$v => <$ty>::$v),+
                }
            }
        }
        impl From<$ty> for $arg {
            fn from(t: $ty) -> $arg {
                match t {
                    $(<$ty>::$v => $arg::$v),+
                }
            }
        }
    };
}

value_enum!(
    /// An organisation's kind.
    OrgKindArg => aidledger_contracts::model::OrgKind {
        Bank,
        DevelopmentBank,
        PovertyOffice,
        FinanceBureau,
        Auditor,
        ImplementingUnit,
    }
);
value_enum!(
    /// Whether an organisation or account may sign.
    StatusArg => aidledger_contracts::model::Status { Active, Suspended }
);
value_enum!(
    /// A household file's status.
    HouseholdStatusArg => aidledger_contracts::model::HouseholdStatus { Active, Inactive }
);

pub fn condition(s: &str) -> Result<Condition, String> {
    condition_text::parse(s).map_err(|e| e.to_string())
}

pub fn subject(s: &str) -> Result<Subject, String> {
    condition_text::parse_subject(s.trim())
}

/// `code:<slug>` or `hash:<64 hex>`.
pub fn attest_value(s: &str) -> Result<AttestValue, String> {
    AttestValue::parse(s)
}

/// `org:<org>` or `household:<64 hex>` (also `hh:<64 hex>`).
pub fn recipient(s: &str) -> Result<Recipient, String> {
    let s = s.trim();
    if let Some(o) = s.strip_prefix("org:") {
        org(o).map(Recipient::Org)
    } else if let Some(h) = s
        .strip_prefix("household:")
        .or_else(|| s.strip_prefix("hh:"))
    {
        hash(h).map(Recipient::Household)
    } else {
        Err(format!(
            "recipient {s:?}: expected org:<org> or household:<64 hex>"
        ))
    }
}

/// A duration in milliseconds: `30d`, `12h`, `15m`, `45s`, `500ms`, a
/// combination such as `1h 30m` (humantime), or plain milliseconds.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let ms = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().map_err(|_| format!("{s:?}: too large"))?
    } else {
        let d = humantime::parse_duration(s).map_err(|e| {
            format!("{s:?}: {e}; expected a duration such as 30d, 12h, 15m, 45s or 500ms")
        })?;
        u64::try_from(d.as_millis()).map_err(|_| format!("{s:?}: too large"))?
    };
    if ms == 0 {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok(ms)
}

/// One tranche as typed, before the program's decimals are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrancheArg {
    pub id: Slug,
    pub amount: Decimal,
    pub recipient: Recipient,
    pub condition: Condition,
}

impl TrancheArg {
    pub fn to_spec(&self, decimals: u8) -> Result<aidledger_contracts::payload::TrancheSpec> {
        Ok(aidledger_contracts::payload::TrancheSpec {
            id: self.id.clone(),
            amount: self
                .amount
                .to_amount(decimals)
                .with_context(|| format!("tranche {}", self.id))?,
            recipient: self.recipient.clone(),
            condition: self.condition.clone(),
        })
    }
}

/// Parses `id=t1,amount=400.00,to=org:county-unit,when=<condition>`.
///
/// Keys are separated by commas; `when=` (or `condition=`) takes the rest
/// of the text, commas included, so it comes last. Without `when`, the
/// tranche has no condition to wait for and is refused: write
/// `when=after(1970-01-01)` to release at once.
pub fn tranche(s: &str) -> Result<TrancheArg, String> {
    let mut id = None;
    let mut amount = None;
    let mut to = None;
    let mut when = None;
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("tranche {s:?}: expected key=value, got {rest:?}"))?;
        let key = key.trim();
        let value;
        if key == "when" || key == "condition" {
            value = after.trim();
            rest = "";
        } else {
            match after.split_once(',') {
                Some((v, r)) => {
                    value = v.trim();
                    rest = r.trim_start();
                }
                None => {
                    value = after.trim();
                    rest = "";
                }
            }
        }
        let slot = match key {
            "id" => &mut id,
            "amount" => &mut amount,
            "to" | "recipient" => &mut to,
            "when" | "condition" => &mut when,
            _ => {
                return Err(format!(
                    "tranche {s:?}: unknown key {key:?} (expected id, amount, to, when)"
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("tranche {s:?}: {key} is given twice"));
        }
        *slot = Some(value.to_string());
    }
    let need = |v: Option<String>, k: &str| v.ok_or_else(|| format!("tranche {s:?}: missing {k}="));
    let id = need(id, "id")?;
    let amount = need(amount, "amount")?;
    let to = need(to, "to")?;
    let when = need(when, "when")?;
    Ok(TrancheArg {
        id: slug(&id).map_err(|e| format!("tranche id: {e}"))?,
        amount: decimal(&amount).map_err(|e| format!("tranche {id}: {e}"))?,
        recipient: recipient(&to).map_err(|e| format!("tranche {id}: {e}"))?,
        condition: condition(&when).map_err(|e| format!("tranche {id}: {e}"))?,
    })
}

/// A tranche in a `--tranches-file` (JSON list).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrancheJson {
    id: String,
    /// A decimal string (`"400.00"`) or a whole number of currency units.
    amount: serde_json::Value,
    #[serde(alias = "recipient")]
    to: String,
    #[serde(alias = "condition")]
    when: String,
}

/// Reads a JSON list of `{"id", "amount", "to", "when"}` objects.
pub fn tranches_file(path: &Path) -> Result<Vec<TrancheArg>> {
    let text = read_small(path)?;
    let list: Vec<TrancheJson> = serde_json::from_str(&text).map_err(|e| {
        usage(format!(
            "{}: expected a JSON list of {{\"id\", \"amount\", \"to\", \"when\"}}: {e}",
            path.display()
        ))
    })?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        let amount = match &t.amount {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
            other => {
                return Err(usage(format!(
                    "{}: tranche {i}: amount {other} must be a decimal string such as \"400.00\"",
                    path.display()
                )))
            }
        };
        let bad = |e: String| usage(format!("{}: tranche {i}: {e}", path.display()));
        out.push(TrancheArg {
            id: slug(&t.id).map_err(bad)?,
            amount: decimal(&amount).map_err(bad)?,
            recipient: recipient(&t.to).map_err(bad)?,
            condition: condition(&t.when).map_err(bad)?,
        });
    }
    Ok(out)
}

/// Reads a condition file: a JSON string, or the text syntax.
pub fn condition_file(path: &Path) -> Result<Condition> {
    let text = read_small(path)?;
    let t = text.trim();
    let src = if t.starts_with('"') {
        serde_json::from_str::<String>(t)
            .map_err(|e| usage(format!("{}: not a JSON string: {e}", path.display())))?
    } else {
        t.to_string()
    };
    condition(&src).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// Reads a list of household ids, one per line (blank lines and `#`
/// comments ignored), or a JSON list of hex strings.
pub fn households_file(path: &Path) -> Result<Vec<Hash>> {
    let text = read_small(path)?;
    let t = text.trim();
    let items: Vec<String> = if t.starts_with('[') {
        serde_json::from_str(t).map_err(|e| {
            usage(format!(
                "{}: not a JSON list of hex ids: {e}",
                path.display()
            ))
        })?
    } else {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    items
        .iter()
        .enumerate()
        .map(|(i, h)| {
            hash(h).map_err(|e| usage(format!("{} entry {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Largest input file read by the CLI.
const INPUT_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a text file of bounded size, with the path in every error.
pub fn read_small(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > INPUT_MAX_BYTES {
        bail!("{} is larger than {INPUT_MAX_BYTES} bytes", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Converts a parser's `String` error into a usage error.
pub fn check<T>(r: Result<T, String>) -> Result<T> {
    r.map_err(usage)
}

/// The one-line reason for a missing required flag.
pub fn required<T>(v: Option<T>, flag: &str) -> Result<T> {
    v.ok_or_else(|| usage(format!("{flag} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tranche_flag_parses_all_fields() {
        let t = tranche(
            "id=t1,amount=400.00,to=org:county-unit,when=all(after(2026-03-01), approvals(2, of: [dev-bank, poverty-office]))",
        )
        .unwrap();
        assert_eq!(t.id.as_str(), "t1");
        assert_eq!(t.amount.to_amount(2).unwrap(), Amount(40_000));
        assert_eq!(
            t.recipient,
            Recipient::Org(OrgId::new("county-unit").unwrap())
        );
        assert_eq!(
            condition_text::print(&t.condition),
            "all(after(2026-03-01), approvals(2, of: [dev-bank, poverty-office]))"
        );
    }

    #[test]
    fn tranche_flag_accepts_any_key_order_and_households() {
        let hh = "ab".repeat(32);
        let t = tranche(&format!(
            " amount = 12 , to=household:{hh}, id=t-2, when=released(t1)"
        ))
        .unwrap();
        assert_eq!(t.id.as_str(), "t-2");
        assert_eq!(t.amount.to_amount(0).unwrap(), Amount(12));
        assert_eq!(t.recipient, Recipient::Household(Hash([0xab; 32])));
        let t2 = tranche(&format!(
            "id=x,amount=1,to=hh:{hh},condition=after(1970-01-01)"
        ))
        .unwrap();
        assert_eq!(t2.recipient, t.recipient);
    }

    #[test]
    fn tranche_flag_refuses_bad_input() {
        for (bad, why) in [
            ("amount=1,to=org:a,when=after(2026-01-01)", "missing id"),
            ("id=t1,to=org:a,when=after(2026-01-01)", "missing amount"),
            ("id=t1,amount=1,when=after(2026-01-01)", "missing to"),
            ("id=t1,amount=1,to=org:a", "missing when"),
            (
                "id=T1,amount=1,to=org:a,when=after(2026-01-01)",
                "invalid identifier",
            ),
            (
                "id=t1,amount=1.5x,to=org:a,when=after(2026-01-01)",
                "invalid amount",
            ),
            (
                "id=t1,amount=1,to=bank:a,when=after(2026-01-01)",
                "expected org:",
            ),
            (
                "id=t1,amount=1,to=org:a,when=after(2026-02-30)",
                "no such day",
            ),
            (
                "id=t1,id=t2,amount=1,to=org:a,when=after(2026-01-01)",
                "given twice",
            ),
            (
                "id=t1,amount=1,to=org:a,colour=red,when=after(2026-01-01)",
                "unknown key",
            ),
            ("id=t1,amount", "expected key=value"),
        ] {
            let e = tranche(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn amounts_respect_the_currency() {
        let d = decimal("12.345").unwrap();
        assert!(d.to_amount(2).is_err());
        assert_eq!(d.to_amount(3).unwrap(), Amount(12_345));
        assert!(decimal("1.123456789").is_err());
        assert!(decimal("-1").is_err());
    }

    #[test]
    fn value_enums_name_each_variant_as_its_json_does() {
        use clap::ValueEnum;
        for v in OrgKindArg::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_string();
            let kind: aidledger_contracts::model::OrgKind = (*v).into();
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(OrgKindArg::from(kind), *v);
        }
        for v in StatusArg::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_string();
            let s: aidledger_contracts::model::Status = (*v).into();
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
        for v in HouseholdStatusArg::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_string();
            let s: aidledger_contracts::model::HouseholdStatus = (*v).into();
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(duration_ms("30d").unwrap(), 30 * 86_400_000);
        assert_eq!(duration_ms("1500").unwrap(), 1500);
        assert_eq!(duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(duration_ms("250ms").unwrap(), 250);
        assert!(duration_ms("0").is_err());
        assert_eq!(duration_ms("1h 30m").unwrap(), 5_400_000);
        assert!(duration_ms("3x").is_err());
        assert!(duration_ms("99999999999999999999d").is_err());
        assert!(duration_ms("").is_err());
    }

    #[test]
    fn values_and_recipients() {
        assert!(attest_value("code:complete").is_ok());
        assert!(attest_value(&format!("hash:{}", "00".repeat(32))).is_ok());
        assert!(attest_value("complete").is_err());
        assert!(recipient("org:Bad").is_err());
        assert!(hash("abc").is_err());
    }
}
