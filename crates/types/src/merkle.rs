//! A binary Merkle tree over a block's transaction ids, with inclusion proofs.
//!
//! The shape follows RFC 6962 (Certificate Transparency): the left subtree
//! holds the largest power of two strictly below the leaf count. Leaves and
//! inner nodes are hashed under different domain tags, so an inner node can
//! never be passed off as a leaf (the second-preimage attack on naive trees).

use serde::{Deserialize, Serialize};

use crate::hash::{domain, hash_parts, Hash};

/// Deepest proof accepted: enough for 2^64 leaves.
pub const PROOF_MAX_SIBLINGS: usize = 64;

pub fn leaf_hash(leaf: &Hash) -> Hash {
    hash_parts(domain::MERKLE_LEAF, &[leaf.as_bytes()])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    hash_parts(domain::MERKLE_NODE, &[left.as_bytes(), right.as_bytes()])
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root over `leaves` in order. The empty tree has its own fixed root.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return hash_parts(domain::MERKLE_EMPTY, &[]);
    }
    let mut level: Vec<Hash> = leaves.iter().map(leaf_hash).collect();
    // Bottom-up pairing gives the same shape as the recursive RFC 6962 split:
    // an odd node at the end of a level is carried up unchanged.
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [l, r] => next.push(node_hash(l, r)),
                [single] => next.push(*single),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    level[0]
}

/// Proof that a leaf sits at `index` in a tree of `leaf_count` leaves.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerkleProof {
    pub index: u64,
    pub leaf_count: u64,
    /// Sibling hashes from the leaf up to the root.
    pub siblings: Vec<Hash>,
}

/// Builds the inclusion proof for `leaves[index]`.
pub fn prove(leaves: &[Hash], index: usize) -> Option<MerkleProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut siblings = Vec::new();
    let mut level: Vec<Hash> = leaves.iter().map(leaf_hash).collect();
    let mut i = index;
    while level.len() > 1 {
        let sib = i ^ 1;
        if sib < level.len() {
            siblings.push(level[sib]);
        }
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [l, r] => next.push(node_hash(l, r)),
                [single] => next.push(*single),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
        i /= 2;
    }
    Some(MerkleProof {
        index: index as u64,
        leaf_count: leaves.len() as u64,
        siblings,
    })
}

/// Checks a proof against a root and the trusted leaf count (a block
/// header's `tx_count`). Rejects proofs with the wrong number of siblings for
/// the claimed position.
pub fn verify(root_hash: &Hash, leaf_count: u64, leaf: &Hash, proof: &MerkleProof) -> bool {
    if proof.leaf_count != leaf_count
        || proof.index >= proof.leaf_count
        || proof.siblings.len() > PROOF_MAX_SIBLINGS
    {
        return false;
    }
    let mut acc = leaf_hash(leaf);
    let mut i = proof.index;
    let mut width = proof.leaf_count;
    let mut sibs = proof.siblings.iter();
    while width > 1 {
        let sib = i ^ 1;
        if sib < width {
            let Some(s) = sibs.next() else {
                return false;
            };
            acc = if i.is_multiple_of(2) {
                node_hash(&acc, s)
            } else {
                node_hash(s, &acc)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    sibs.next().is_none() && acc == *root_hash
}

#[doc(hidden)]
pub fn rfc6962_root(leaves: &[Hash]) -> Hash {
    // Recursive reference definition, used by tests to pin the shape.
    match leaves.len() {
        0 => hash_parts(domain::MERKLE_EMPTY, &[]),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split_point(n);
            node_hash(&rfc6962_root(&leaves[..k]), &rfc6962_root(&leaves[k..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| sha256(&i.to_le_bytes())).collect()
    }

    #[test]
    fn bottom_up_matches_recursive_definition() {
        for n in 0..70 {
            assert_eq!(root(&leaves(n)), rfc6962_root(&leaves(n)), "n = {n}");
        }
    }

    #[test]
    fn leaf_is_not_an_inner_node() {
        let l = leaves(2);
        let inner = node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1]));
        // A one-leaf tree whose leaf is the inner node's preimage differs.
        assert_ne!(root(&[inner]), root(&l));
    }

    #[test]
    fn tampered_proofs_fail() {
        let l = leaves(13);
        let r = root(&l);
        let p = prove(&l, 6).unwrap();
        assert!(verify(&r, l.len() as u64, &l[6], &p));
        assert!(!verify(&r, l.len() as u64, &l[7], &p));
        let mut q = p.clone();
        q.index = 7;
        assert!(!verify(&r, l.len() as u64, &l[6], &q));
        let mut q = p.clone();
        q.siblings[0].0[0] ^= 1;
        assert!(!verify(&r, l.len() as u64, &l[6], &q));
        let mut q = p.clone();
        q.siblings.push(Hash::ZERO);
        assert!(!verify(&r, l.len() as u64, &l[6], &q));
        // A proof claiming another tree size is refused against the header's count.
        assert!(!verify(&r, 12, &l[6], &p));
        assert!(prove(&l, 13).is_none());
    }

    proptest! {
        #[test]
        fn every_leaf_proves(n in 1usize..300, seed in any::<u64>()) {
            let l = leaves(n);
            let r = root(&l);
            let i = (seed % n as u64) as usize;
            let p = prove(&l, i).unwrap();
            prop_assert!(verify(&r, l.len() as u64, &l[i], &p));
            prop_assert!(p.siblings.len() <= 9);
        }

        #[test]
        fn reordering_changes_the_root(n in 2usize..64, a in any::<u64>(), b in any::<u64>()) {
            let mut l = leaves(n);
            let (i, j) = ((a % n as u64) as usize, (b % n as u64) as usize);
            prop_assume!(i != j);
            let before = root(&l);
            l.swap(i, j);
            prop_assert_ne!(before, root(&l));
        }
    }
}
