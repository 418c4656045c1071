//! The chain file: a self-describing, self-checking copy of a chain for
//! offline audit, written by `aidledger export-blocks`.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic        16 bytes  "AIDLEDGER-CHAIN\0"
//! version      u32       1
//! header       u32 length (at most 64 KiB) + JSON (FileHeader): chain id,
//!                        genesis hash, heights, block count, a description
//! genesis      u32 length (at most 4 MiB) + canonical encoding of Genesis
//! records      per height, from 1 up:
//!                tag 'B' (1 byte)
//!                u32 length (at most 16 MiB) + canonical encoding of Block
//!                u32 length (at most 64 KiB) + canonical encoding of
//!                CommitCertificate
//! end          tag 'E' (1 byte), u64 record count
//! digest       32 bytes: SHA-256 of every byte before it
//! ```
//!
//! Every length is checked against its bound before anything is
//! allocated. The digest means a single altered byte anywhere fails the
//! replay, even one the block checks could not see (a header field, the
//! record count). The blocks themselves stay verifiable one by one: a
//! block altered and re-digested is caught, at its height, by the hash
//! chain, the certificates and the state roots.

use std::io::{Read, Write};

use aidledger_contracts::Genesis;
use aidledger_storage::Store;
use aidledger_types::block::BLOCK_MAX_BYTES;
use aidledger_types::{codec, Block, CommitCertificate, Hash};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AuditError, Failure};

pub const MAGIC: &[u8; 16] = b"AIDLEDGER-CHAIN\0";
pub const VERSION: u32 = 1;
pub const HEADER_MAX_BYTES: usize = 64 * 1024;
pub const GENESIS_MAX_BYTES: usize = aidledger_storage::GENESIS_MAX_BYTES;
pub const CERTIFICATE_MAX_BYTES: usize = 64 * 1024;
pub const TAG_BLOCK: u8 = b'B';
pub const TAG_END: u8 = b'E';

/// The JSON header: enough for a person (or `head -c`) to see what the
/// file holds. The replay cross-checks it against the records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeader {
    pub format: String,
    pub version: u32,
    pub chain_id: String,
    pub genesis_hash: Hash,
    /// 0 when the file holds no block.
    pub first_height: u64,
    pub last_height: u64,
    pub blocks: u64,
    pub layout: String,
}

const FORMAT_NAME: &str = "aidledger chain file";
const LAYOUT: &str = "magic, u32 version, u32+JSON header, u32+genesis, records ('B', u32+block, u32+certificate) from height 1, 'E' + u64 record count, SHA-256 of all preceding bytes; integers little-endian, values in aidledger's canonical encoding";

/// What [`write_chain_file`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct WriteSummary {
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub blocks: u64,
    pub bytes: u64,
    pub digest: Hash,
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter<'_> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(b)?;
        self.hasher.update(b);
        self.bytes += b.len() as u64;
        Ok(())
    }
    fn put_len(&mut self, what: &str, n: usize, limit: usize) -> Result<(), AuditError> {
        if n > limit {
            return Err(AuditError::Invalid {
                what: what.into(),
                reason: format!("{n} bytes, over the file format's limit of {limit}"),
            });
        }
        self.put(&(n as u32).to_le_bytes()).map_err(io("output"))
    }
}

fn io(path: &str) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_string(),
        source,
    }
}

/// Writes every committed block of `store` with its certificate, from
/// height 1 to the head. The store is read as it is; nothing is verified
/// here (that is the replay's job).
pub fn write_chain_file(
    store: &dyn Store,
    out: &mut dyn Write,
) -> Result<WriteSummary, AuditError> {
    let (genesis_hash, genesis_bytes) = store.genesis()?.ok_or_else(|| AuditError::Invalid {
        what: "store".into(),
        reason: "holds no genesis".into(),
    })?;
    let genesis: Genesis =
        codec::decode_with_limit(&genesis_bytes, GENESIS_MAX_BYTES).map_err(|e| {
            AuditError::Invalid {
                what: "stored genesis".into(),
                reason: e.to_string(),
            }
        })?;
    let last = store.head()?.map_or(0, |h| h.height);
    let header = FileHeader {
        format: FORMAT_NAME.into(),
        version: VERSION,
        chain_id: genesis.chain_id.to_string(),
        genesis_hash,
        first_height: u64::from(last > 0),
        last_height: last,
        blocks: last,
        layout: LAYOUT.into(),
    };
    let header_json = serde_json::to_vec(&header).map_err(|e| AuditError::Invalid {
        what: "file header".into(),
        reason: e.to_string(),
    })?;
    let mut w = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    w.put(MAGIC).map_err(io("output"))?;
    w.put(&VERSION.to_le_bytes()).map_err(io("output"))?;
    w.put_len("file header", header_json.len(), HEADER_MAX_BYTES)?;
    w.put(&header_json).map_err(io("output"))?;
    w.put_len("genesis", genesis_bytes.len(), GENESIS_MAX_BYTES)?;
    w.put(&genesis_bytes).map_err(io("output"))?;
    for h in 1..=last {
        let block = store.block(h)?.ok_or_else(|| AuditError::Invalid {
            what: format!("block {h}"),
            reason: "missing from the store".into(),
        })?;
        let cert = store.certificate(h)?.ok_or_else(|| AuditError::Invalid {
            what: format!("certificate {h}"),
            reason: "missing from the store".into(),
        })?;
        let b = codec::encode(&block);
        let c = codec::encode(&cert);
        w.put(&[TAG_BLOCK]).map_err(io("output"))?;
        w.put_len(&format!("block {h}"), b.len(), BLOCK_MAX_BYTES)?;
        w.put(&b).map_err(io("output"))?;
        w.put_len(&format!("certificate {h}"), c.len(), CERTIFICATE_MAX_BYTES)?;
        w.put(&c).map_err(io("output"))?;
    }
    w.put(&[TAG_END]).map_err(io("output"))?;
    w.put(&last.to_le_bytes()).map_err(io("output"))?;
    let digest: [u8; 32] = w.hasher.clone().finalize().into();
    w.inner.write_all(&digest).map_err(io("output"))?;
    w.inner.flush().map_err(io("output"))?;
    Ok(WriteSummary {
        chain_id: header.chain_id,
        genesis_hash,
        blocks: last,
        bytes: w.bytes + 32,
        digest: Hash(digest),
    })
}

/// Reads a whole chain file held in memory the way the replay reads one
/// (magic, version, header, genesis, every record, the end marker and the
/// trailing digest) without verifying what the blocks say: the decoder
/// alone, for the fuzz targets and tests. Returns the record count.
pub fn decode_chain_file(bytes: &[u8]) -> Result<u64, Failure> {
    let mut r = ChainReader::new(Box::new(std::io::Cursor::new(bytes.to_vec())));
    r.start()?;
    let mut records = 0u64;
    // Each record consumes at least one byte, so this ends.
    while let Record::Entry(..) = r.next(records + 1)? {
        records += 1;
    }
    r.finish(records)?;
    Ok(records)
}

/// Reads a chain file, hashing every byte it consumes.
pub(crate) struct ChainReader {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    offset: u64,
}

/// What one step of reading found.
pub(crate) enum Record {
    Entry(Block, CommitCertificate),
    End,
}

impl ChainReader {
    pub(crate) fn new(inner: Box<dyn Read + Send>) -> ChainReader {
        ChainReader {
            inner,
            hasher: Sha256::new(),
            offset: 0,
        }
    }

    fn exact(&mut self, n: usize, what: &str) -> Result<Vec<u8>, Failure> {
        let mut buf = vec![0u8; n];
        self.inner.read_exact(&mut buf).map_err(|e| {
            Failure::file(format!(
                "is truncated or unreadable at byte {} ({what}): {e}",
                self.offset
            ))
        })?;
        self.hasher.update(&buf);
        self.offset += n as u64;
        Ok(buf)
    }

    fn u32_len(&mut self, what: &str, limit: usize) -> Result<usize, Failure> {
        let at = self.offset;
        let b = self.exact(4, what)?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if n > limit {
            return Err(Failure::file(format!(
                "{what} at byte {at} claims {n} bytes, over the limit of {limit}"
            )));
        }
        Ok(n)
    }

    /// Magic, version, header and genesis.
    pub(crate) fn start(&mut self) -> Result<(FileHeader, Vec<u8>), Failure> {
        let magic = self.exact(MAGIC.len(), "magic")?;
        if magic.as_slice() != MAGIC.as_slice() {
            return Err(Failure::file("is not an aidledger chain file (bad magic)"));
        }
        let v = self.exact(4, "version")?;
        let v = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        if v != VERSION {
            return Err(Failure::file(format!(
                "has format version {v}; this auditor reads version {VERSION}"
            )));
        }
        let n = self.u32_len("file header", HEADER_MAX_BYTES)?;
        let json = self.exact(n, "file header")?;
        let header: FileHeader = serde_json::from_slice(&json)
            .map_err(|e| Failure::file(format!("header is not valid: {e}")))?;
        if header.format != FORMAT_NAME || header.version != VERSION {
            return Err(Failure::file(format!(
                "header describes {:?} version {}, not {FORMAT_NAME:?} version {VERSION}",
                header.format, header.version
            )));
        }
        let n = self.u32_len("genesis", GENESIS_MAX_BYTES)?;
        let genesis = self.exact(n, "genesis")?;
        Ok((header, genesis))
    }

    /// The next record; `height` is the height it should hold.
    pub(crate) fn next(&mut self, height: u64) -> Result<Record, Failure> {
        let tag = self.exact(1, "record tag")?;
        match tag[0] {
            TAG_BLOCK => {
                let n = self.u32_len(&format!("block {height}"), BLOCK_MAX_BYTES)?;
                let b = self.exact(n, "block")?;
                let block = Block::decode(&b)
                    .map_err(|e| Failure::at(height, "block", format!("does not decode: {e}")))?;
                let n = self.u32_len(&format!("certificate {height}"), CERTIFICATE_MAX_BYTES)?;
                let c = self.exact(n, "certificate")?;
                let cert: CommitCertificate = codec::decode_with_limit(&c, CERTIFICATE_MAX_BYTES)
                    .map_err(|e| {
                    Failure::at(height, "certificate", format!("does not decode: {e}"))
                })?;
                Ok(Record::Entry(block, cert))
            }
            TAG_END => Ok(Record::End),
            t => Err(Failure::file(format!(
                "has an unknown record tag {t:#04x} at byte {}",
                self.offset - 1
            ))),
        }
    }

    /// The record count and digest after the end tag, and nothing after.
    pub(crate) fn finish(&mut self, records: u64) -> Result<(), Failure> {
        let c = self.exact(8, "record count")?;
        let mut cb = [0u8; 8];
        cb.copy_from_slice(&c);
        let count = u64::from_le_bytes(cb);
        if count != records {
            return Err(Failure::file(format!(
                "end marker counts {count} records, the file holds {records}"
            )));
        }
        let expected: [u8; 32] = self.hasher.clone().finalize().into();
        let mut digest = [0u8; 32];
        self.inner
            .read_exact(&mut digest)
            .map_err(|e| Failure::file(format!("is truncated: no trailing digest ({e})")))?;
        if digest != expected {
            return Err(Failure::file(
                "trailing digest mismatch: the file was altered after it was written",
            ));
        }
        let mut extra = [0u8; 1];
        match self.inner.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Failure::file("has bytes after its trailing digest")),
            Err(e) => Err(Failure::file(format!("cannot be read to its end: {e}"))),
        }
    }
}
