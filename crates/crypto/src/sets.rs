//! Following the validator set from genesis without executing a block
//! (ADR 017 part 4), so a joining node that holds only the genesis can
//! trust a snapshot's certificate.
//!
//! Each block header names the set that certifies it and the set that
//! certifies the next block; they differ exactly at the last block of a
//! set. A [`SetChange`] carries that last block's header, its certificate
//! and the incoming set. Checking each change's certificate against the
//! set then in force, and the incoming set against the hash its header
//! names, walks from the genesis set to the set in force at any height,
//! every link a quorum of the set before it.

use aidledger_types::snapshot::{SetChange, SnapshotManifest};
use aidledger_types::{ChainId, ValidatorSet};

use crate::{verify_certificate, CryptoError};

/// The validator sets in force from genesis, as verified set changes
/// showed them: each with the first height it certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetHistory {
    /// `(first height, set)`, heights rising; the first entry is the
    /// genesis set from height 1.
    sets: Vec<(u64, ValidatorSet)>,
}

impl SetHistory {
    /// The history of a chain whose set never changed.
    pub fn genesis(set: ValidatorSet) -> SetHistory {
        SetHistory {
            sets: vec![(1, set)],
        }
    }

    /// The set that certifies block `height`, as far as the changes seen
    /// go.
    pub fn at(&self, height: u64) -> &ValidatorSet {
        let i = self.sets.partition_point(|(from, _)| *from <= height);
        &self.sets[i.saturating_sub(1)].1
    }

    /// The height of the last change followed (0 for none).
    pub fn last_change(&self) -> u64 {
        self.sets
            .last()
            .map_or(0, |(from, _)| from.saturating_sub(1))
    }

    /// Follows `changes`, which must come in rising height order after
    /// the last one already followed. Each change's header must be
    /// certified by the set in force at its height, be the last block of
    /// that set, and name the incoming set's hash. Stops at the first bad
    /// change, keeping the ones before it.
    pub fn follow(&mut self, chain_id: &ChainId, changes: &[SetChange]) -> Result<(), CryptoError> {
        for c in changes {
            let h = c.header.height;
            let bad = |reason: String| CryptoError::SetChange { height: h, reason };
            if h <= self.last_change() {
                return Err(bad(format!(
                    "it does not come after the change at height {}",
                    self.last_change()
                )));
            }
            if &c.header.chain_id != chain_id {
                return Err(bad(format!("it is for chain {}", c.header.chain_id)));
            }
            let current = self.at(h);
            if c.header.validator_set_hash != current.hash() {
                return Err(bad(
                    "its block names another certifying set than the one in force (a change \
                     before it is missing)"
                        .into(),
                ));
            }
            if c.header.next_validator_set_hash == c.header.validator_set_hash {
                return Err(bad("its block is not the last of its set".into()));
            }
            if c.validators.hash() != c.header.next_validator_set_hash {
                return Err(bad("the incoming set is not the one its block names".into()));
            }
            let Some(from) = h.checked_add(1) else {
                return Err(bad("no block can follow it".into()));
            };
            verify_certificate(&c.certificate, chain_id, current, h, &c.header.hash())
                .map_err(|e| bad(format!("certificate: {e}")))?;
            self.sets.push((from, c.validators.clone()));
        }
        Ok(())
    }

    /// Checks a snapshot manifest's anchor: its block is on this chain,
    /// names the set in force at its height, and that set certified it.
    /// The manifest's own consistency ([`SnapshotManifest::check`]) is
    /// separate.
    pub fn verify_manifest(
        &self,
        chain_id: &ChainId,
        manifest: &SnapshotManifest,
    ) -> Result<(), CryptoError> {
        let header = &manifest.block.header;
        let height = header.height;
        let bad = |reason: String| CryptoError::Snapshot { height, reason };
        if &header.chain_id != chain_id {
            return Err(bad(format!("its block is for chain {}", header.chain_id)));
        }
        let set = self.at(height);
        if header.validator_set_hash != set.hash() {
            return Err(bad(
                "its block names another certifying set than the one the set changes lead to"
                    .into(),
            ));
        }
        verify_certificate(
            &manifest.certificate,
            chain_id,
            set,
            height,
            &manifest.block.hash(),
        )
        .map_err(|e| bad(format!("certificate: {e}")))
    }
}
