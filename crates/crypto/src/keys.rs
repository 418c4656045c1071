//! Key generation and key files.

use std::fs;
use std::io::Write;
use std::path::Path;

use aidledger_types::{ChainId, PublicKey, Signature};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::{signing_bytes, CryptoError, Purpose};

pub const KEY_TYPE_ED25519: &str = "ed25519";

/// An ed25519 signing key. The secret never leaves this type except into a
/// key file.
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.public().short())
    }
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Keypair::from_seed(self.signing.to_bytes())
    }
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Keypair {
        let mut rng = rand_core::OsRng;
        Keypair {
            signing: SigningKey::generate(&mut rng),
        }
    }

    /// A key from a 32-byte seed. Deterministic: the simulator and test
    /// fixtures use it; real keys come from [`Keypair::generate`].
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message` for `purpose` on `chain_id`.
    pub fn sign(&self, chain_id: &ChainId, purpose: Purpose, message: &[u8]) -> Signature {
        let bytes = signing_bytes(chain_id, purpose, message);
        Signature(self.signing.sign(&bytes).to_bytes())
    }

    /// The secret seed. Only for deriving the node's libp2p identity from
    /// its consensus key (both are the same ed25519 key) and for writing
    /// key files; never log or send it.
    pub fn secret_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    fn seed_hex(&self) -> String {
        hex::encode(self.signing.to_bytes())
    }
}

/// The on-disk key format: readable JSON that names the key type.
///
/// ```json
/// {"type": "ed25519", "public_key": "<64 hex>", "secret_seed": "<64 hex>", "label": "..."}
/// ```
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    #[serde(rename = "type")]
    pub key_type: String,
    pub public_key: String,
    pub secret_seed: String,
    #[serde(default)]
    pub label: String,
}

/// Largest key file we read; a real one is about 200 bytes.
const KEY_FILE_MAX_BYTES: u64 = 4096;

/// Writes a key file with mode 0600, refusing to overwrite an existing file.
pub fn write_key_file(path: &Path, key: &Keypair, label: &str) -> Result<(), CryptoError> {
    let err = |reason: String| CryptoError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let kf = KeyFile {
        key_type: KEY_TYPE_ED25519.to_string(),
        public_key: key.public().to_hex(),
        secret_seed: key.seed_hex(),
        label: label.to_string(),
    };
    let mut text = serde_json::to_string_pretty(&kf).map_err(|e| err(e.to_string()))?;
    text.push('\n');
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| err(e.to_string()))
}

/// Reads and checks a key file: size, permissions (no group/other access on
/// unix), type, hex, and that the public key matches the secret.
pub fn read_key_file(path: &Path) -> Result<Keypair, CryptoError> {
    let err = |reason: String| CryptoError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > KEY_FILE_MAX_BYTES {
        return Err(err(format!("larger than {KEY_FILE_MAX_BYTES} bytes")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "permissions {mode:o} let others read the secret; run chmod 600"
            )));
        }
    }
    let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let kf: KeyFile =
        serde_json::from_str(&text).map_err(|e| err(format!("not a key file: {e}")))?;
    if kf.key_type != KEY_TYPE_ED25519 {
        return Err(err(format!(
            "key type {:?} is not supported; expected {KEY_TYPE_ED25519:?}",
            kf.key_type
        )));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&kf.secret_seed, &mut seed)
        .map_err(|_| err("secret_seed must be 64 hex characters".into()))?;
    let key = Keypair::from_seed(seed);
    let public = PublicKey::from_hex(&kf.public_key).map_err(|e| err(e.to_string()))?;
    if key.public() != public {
        return Err(err("public_key does not match secret_seed".into()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        let k = Keypair::generate();
        write_key_file(&p, &k, "test fixture").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"type\": \"ed25519\""));
        assert_eq!(read_key_file(&p).unwrap().public(), k.public());
        // Never overwrite a key.
        assert!(write_key_file(&p, &Keypair::generate(), "").is_err());
    }

    #[test]
    fn bad_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keypair::generate();
        let write = |name: &str, body: String, mode: u32| {
            let p = dir.path().join(name);
            fs::write(&p, body).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }
            p
        };
        let good = format!(
            r#"{{"type":"ed25519","public_key":"{}","secret_seed":"{}"}}"#,
            k.public().to_hex(),
            k.seed_hex()
        );
        assert!(read_key_file(&write("ok", good.clone(), 0o600)).is_ok());
        #[cfg(unix)]
        assert!(read_key_file(&write("open", good.clone(), 0o644)).is_err());
        let wrong_type = good.replace("ed25519", "secp256k1");
        assert!(read_key_file(&write("type", wrong_type, 0o600)).is_err());
        let other = Keypair::generate().public().to_hex();
        let mismatch = good.replace(&k.public().to_hex(), &other);
        assert!(read_key_file(&write("mismatch", mismatch, 0o600)).is_err());
        assert!(read_key_file(&write("junk", "{".into(), 0o600)).is_err());
        assert!(read_key_file(&write("big", " ".repeat(5000), 0o600)).is_err());
    }

    #[test]
    fn signatures_are_domain_separated() {
        let k = Keypair::from_seed([1; 32]);
        let a = ChainId::new("chain-a").unwrap();
        let b = ChainId::new("chain-b").unwrap();
        let msg = b"hello";
        let sig = k.sign(&a, Purpose::Tx, msg);
        assert!(crate::verify(&k.public(), &a, Purpose::Tx, msg, &sig).is_ok());
        assert!(crate::verify(&k.public(), &b, Purpose::Tx, msg, &sig).is_err());
        assert!(crate::verify(&k.public(), &a, Purpose::Commit, msg, &sig).is_err());
        assert!(crate::verify(&k.public(), &a, Purpose::Tx, b"hellO", &sig).is_err());
    }
}
