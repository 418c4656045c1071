//! JSON schemas of the values whose serde form is written by hand (ADR
//! 019): hashes, keys and signatures are lowercase hex strings, a currency
//! is three uppercase letters.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

fn string(description: &str, pattern: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .examples([example])
        .build()
        .into()
}

macro_rules! string_schema {
    ($ty:ty, $desc:expr, $pattern:expr, $example:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($desc, $pattern, $example)
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

const HEX64: &str = "1f0e8c4a9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f";

string_schema!(
    crate::Hash,
    "A SHA-256 hash: 64 lowercase hex characters",
    "^[0-9a-f]{64}$",
    HEX64
);
string_schema!(
    crate::PublicKey,
    "An ed25519 public key: 64 lowercase hex characters",
    "^[0-9a-f]{64}$",
    HEX64
);
string_schema!(
    crate::Signature,
    "An ed25519 signature: 128 lowercase hex characters",
    "^[0-9a-f]{128}$",
    concat!(
        "1f0e8c4a9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f",
        "1f0e8c4a9b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f"
    )
);
string_schema!(
    crate::Currency,
    "A currency code: three uppercase letters",
    "^[A-Z]{3}$",
    "CNY"
);
