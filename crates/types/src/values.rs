//! The domain's scalar values. Each validates itself on construction and on
//! deserialisation, so an invalid value cannot exist in memory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hash::truncate;
use crate::TypeError;

fn invalid(what: &'static str, reason: impl Into<String>) -> TypeError {
    TypeError::Invalid {
        what,
        reason: reason.into(),
    }
}

/// Declares a string newtype validated by `$check`, serialised as a string.
macro_rules! checked_string {
    ($(#[$m:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(try_from = "String")]
        pub struct $name(String);

        // Written as the string it holds, without the copy that serde's
        // `into = "String"` makes on every encoding.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, TypeError> {
                let s = s.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s).map_err(|r| invalid($what, format!("{:?}: {}", truncate(&s), r)))?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = TypeError;
            fn try_from(s: String) -> Result<Self, TypeError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl FromStr for $name {
            type Err = TypeError;
            fn from_str(s: &str) -> Result<Self, TypeError> {
                Self::new(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

/// Longest slug accepted for any identifier.
pub const SLUG_MAX_LEN: usize = 64;

fn check_slug(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > SLUG_MAX_LEN {
        return Err(format!("must be 1 to {SLUG_MAX_LEN} characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits and '-' are allowed".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must not start or end with '-'".into());
    }
    Ok(())
}

checked_string!(
    /// An organisation's slug, such as `state-bank`.
    OrgId,
    "organisation id",
    check_slug
);
checked_string!(
    /// A slug naming an object chosen by its creator: a program, an
    /// application, a plan, a tranche, a claim.
    Slug,
    "identifier",
    check_slug
);
checked_string!(
    /// The consortium's chain id, such as `aidledger-testnet-1`. It is part of
    /// every signed message, so a signature is never valid on another chain.
    ChainId,
    "chain id",
    check_slug
);

/// Longest region code: `province/county/village`.
pub const REGION_MAX_LEN: usize = 96;

checked_string!(
    /// A region code with one to three `/`-separated slug segments:
    /// province, county, village. A code covers every code it prefixes.
    RegionCode,
    "region code",
    |s| {
        if s.is_empty() || s.len() > REGION_MAX_LEN {
            return Err(format!("must be 1 to {REGION_MAX_LEN} characters"));
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 {
            return Err("at most three segments: province/county/village".into());
        }
        for p in parts {
            check_slug(p)?;
        }
        Ok(())
    }
);

impl RegionCode {
    /// True if `other` lies within this region (or is this region).
    pub fn covers(&self, other: &RegionCode) -> bool {
        other.0 == self.0
            || (other.0.len() > self.0.len()
                && other.0.starts_with(&self.0)
                && other.0.as_bytes()[self.0.len()] == b'/')
    }
}

/// Shortest free-text field we accept is empty; longest is this many bytes.
pub const TEXT_MAX_LEN: usize = 256;

checked_string!(
    /// Short free text such as a program title or an application's purpose.
    /// Never personal data: the contracts' documentation says so and
    /// registrars are trained on it; the length cap limits the damage.
    Text,
    "text",
    |s| {
        if s.len() > TEXT_MAX_LEN {
            return Err(format!("at most {TEXT_MAX_LEN} bytes"));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err("control characters are not allowed".into());
        }
        if let Some(c) = s.chars().find(|c| is_disguising(*c)) {
            return Err(format!(
                "U+{:04X} is not allowed: bidirectional-formatting and invisible characters \
                 can make a name display as another in reports",
                u32::from(c)
            ));
        }
        Ok(())
    }
);

/// Characters that change how surrounding text is displayed without being
/// seen themselves: the bidirectional embeddings, overrides and isolates
/// (U+202A-U+202E, U+2066-U+2069), the direction marks (U+200E, U+200F,
/// U+061C), the zero-width space (U+200B) and the byte-order mark
/// (U+FEFF). Zero-width (non-)joiners stay allowed: scripts need them.
pub fn is_disguising(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{200B}'
            | '\u{FEFF}'
    )
}

/// An ISO-4217-style currency code: three uppercase ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Currency([u8; 3]);

// Written as its three letters, without a `String` per encoding.
impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Currency {
    pub fn new(s: &str) -> Result<Self, TypeError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(
                "currency",
                format!(
                    "{:?}: expected three uppercase letters, e.g. CNY",
                    truncate(s)
                ),
            ));
        }
        Ok(Currency([b[0], b[1], b[2]]))
    }
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII uppercase letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}
impl TryFrom<String> for Currency {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, TypeError> {
        Currency::new(&s)
    }
}
impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_string()
    }
}
impl FromStr for Currency {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        Currency::new(s)
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// An amount of money in integer minor units (for CNY: fen). There are no
/// floats anywhere in state; all arithmetic is checked.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn minor(self) -> u64 {
        self.0
    }
    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }
    pub fn checked_sub(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(Amount)
    }
    /// `self * num / den`, rounded down, without intermediate overflow.
    pub fn checked_mul_div(self, num: u64, den: u64) -> Option<Amount> {
        if den == 0 {
            return None;
        }
        let v = (self.0 as u128).checked_mul(num as u128)? / den as u128;
        u64::try_from(v).ok().map(Amount)
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a decimal such as `1250.00` or `1250` into minor units with
    /// `decimals` fractional digits. More fractional digits than the currency
    /// has is an error, never a silent rounding.
    pub fn parse_decimal(s: &str, decimals: u32) -> Result<Amount, TypeError> {
        let err = |r: &str| invalid("amount", format!("{:?}: {r}", truncate(s)));
        let s = s.trim();
        let s = s.replace('_', "");
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s.as_str(), ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "expected digits, optionally followed by '.' and decimals",
            ));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("decimals must be digits"));
        }
        if frac.len() > decimals as usize {
            return Err(err(&format!("at most {decimals} decimal places")));
        }
        let scale = 10u64
            .checked_pow(decimals)
            .ok_or_else(|| err("unsupported precision"))?;
        let i: u64 = int.parse().map_err(|_| err("too large"))?;
        let mut f: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| err("too large"))?
        };
        for _ in frac.len()..decimals as usize {
            f *= 10;
        }
        i.checked_mul(scale)
            .and_then(|v| v.checked_add(f))
            .map(Amount)
            .ok_or_else(|| err("too large"))
    }

    /// Formats minor units as a decimal with `decimals` fractional digits.
    pub fn to_decimal(self, decimals: u32) -> String {
        if decimals == 0 {
            return self.0.to_string();
        }
        let scale = 10u64.pow(decimals);
        format!(
            "{}.{:0width$}",
            self.0 / scale,
            self.0 % scale,
            width = decimals as usize
        )
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

/// An ed25519 public key: an account's signing key or a validator's key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Result<Self, TypeError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| {
            invalid(
                "public key",
                format!("expected 64 hex characters, got {:?}", truncate(s)),
            )
        })?;
        Ok(PublicKey(out))
    }
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}
impl FromStr for PublicKey {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        PublicKey::from_hex(s)
    }
}
impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            crate::codec::words::serialize(&self.0, s)
        }
    }
}
impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            Ok(PublicKey(crate::codec::words::deserialize(d)?))
        }
    }
}

/// An ed25519 signature (R || s).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}
impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..4]))
    }
}
impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            crate::codec::words::serialize(&self.0, s)
        }
    }
}
impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let mut out = [0u8; 64];
            hex::decode_to_slice(&s, &mut out)
                .map_err(|_| serde::de::Error::custom("signature: expected 128 hex characters"))?;
            Ok(Signature(out))
        } else {
            Ok(Signature(crate::codec::words::deserialize(d)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_validate() {
        assert!(OrgId::new("state-bank").is_ok());
        for bad in ["", "State", "a b", "-x", "x-", "é", &"a".repeat(65)] {
            assert!(OrgId::new(bad).is_err(), "{bad:?} accepted");
        }
        // Deserialisation validates too.
        assert!(serde_json::from_str::<OrgId>("\"Bad Id\"").is_err());
        let b = crate::codec::encode(&"UPPER".to_string());
        assert!(crate::codec::decode::<OrgId>(&b).is_err());
    }

    #[test]
    fn text_refuses_characters_that_disguise_names() {
        // "Acme" displayed reversed inside a name, or split invisibly.
        for bad in [
            "County \u{202E}tinu\u{202C} Office",
            "a\u{2066}b",
            "\u{200F}x",
            "Ac\u{200B}me",
            "\u{FEFF}Acme",
        ] {
            let e = Text::new(bad).unwrap_err().to_string();
            assert!(e.contains("U+"), "{bad:?}: {e}");
            // Every way in refuses it: JSON and the canonical encoding.
            let json = serde_json::to_string(bad).unwrap();
            assert!(serde_json::from_str::<Text>(&json).is_err());
            let b = crate::codec::encode(&bad.to_string());
            assert!(crate::codec::decode::<Text>(&b).is_err());
        }
        // Scripts that need joiners keep them; ordinary non-Latin text is fine.
        for good in ["می\u{200C}خواهم", "甘肃省定西市", "Šiauliai", "क्\u{200D}ष"]
        {
            assert!(Text::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn regions_cover_their_children_only() {
        let p = RegionCode::new("gansu").unwrap();
        let c = RegionCode::new("gansu/dingxi").unwrap();
        let v = RegionCode::new("gansu/dingxi/lijiabao").unwrap();
        let other = RegionCode::new("gansu2/dingxi").unwrap();
        assert!(p.covers(&c) && p.covers(&v) && c.covers(&v) && p.covers(&p));
        assert!(!c.covers(&p) && !p.covers(&other));
        assert!(RegionCode::new("a/b/c/d").is_err());
        assert!(RegionCode::new("a//b").is_err());
    }

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(
            Amount::parse_decimal("1250.00", 2).unwrap(),
            Amount(125_000)
        );
        assert_eq!(Amount::parse_decimal("1250.5", 2).unwrap(), Amount(125_050));
        assert_eq!(Amount::parse_decimal("7", 2).unwrap(), Amount(700));
        assert_eq!(Amount::parse_decimal("1_000", 0).unwrap(), Amount(1000));
        for bad in [
            "",
            "1.234",
            "-1",
            "1e3",
            "1.2.3",
            "abc",
            "99999999999999999999",
        ] {
            assert!(Amount::parse_decimal(bad, 2).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Amount(125_050).to_decimal(2), "1250.50");
        assert_eq!(Amount(5).to_decimal(2), "0.05");
    }

    #[test]
    fn amount_arithmetic_is_checked() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(1000).checked_mul_div(40, 100), Some(Amount(400)));
        assert_eq!(Amount(u64::MAX).checked_mul_div(2, 1), None);
        assert_eq!(Amount(1).checked_mul_div(1, 0), None);
    }

    #[test]
    fn currency_validates() {
        assert_eq!(Currency::new("CNY").unwrap().as_str(), "CNY");
        for bad in ["cny", "CN", "CNYY", "C1Y"] {
            assert!(Currency::new(bad).is_err());
        }
    }

    #[test]
    fn signature_encodes_as_64_raw_bytes() {
        let s = Signature([7u8; 64]);
        let b = crate::codec::encode(&s);
        assert_eq!(b.len(), 64);
        assert_eq!(crate::codec::decode::<Signature>(&b).unwrap(), s);
    }
}
