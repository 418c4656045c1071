//! Single and batch verification under one rule set (see the crate docs).

use std::collections::BTreeMap;

use aidledger_types::{
    codec, ChainId, CommitCertificate, Hash, PublicKey, Signature, SignedTx, ValidatorSet,
};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::{signing_bytes, CryptoError, Purpose};

/// One signature to check: a key, the full signed bytes, and the signature.
#[derive(Clone, Copy, Debug)]
pub struct SigItem<'a> {
    pub public: &'a PublicKey,
    /// The bytes that were signed, as built by [`signing_bytes`].
    pub signed_bytes: &'a [u8],
    pub signature: &'a Signature,
}

/// A signature whose encodings passed the structural rules, ready for the
/// group equation.
struct Prepared {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    s_bytes: [u8; 32],
    r_bytes: [u8; 32],
    a_bytes: [u8; 32],
}

/// Decompresses a point, refusing non-canonical encodings and small-order
/// points. Both paths go through here, so both refuse the same inputs.
///
/// An encoding is canonical when re-compressing the decoded point gives
/// the same 32 bytes. Re-compressing costs a field inversion, about a
/// quarter of a batched check (perf, ADR 004's second amendment), so the
/// same rule is decided on the bytes instead:
/// - the y coordinate (the low 255 bits) must be below p = 2^255 - 19,
///   because compression writes y fully reduced;
/// - the sign bit must be 0 when x = 0, because -0 = 0 compresses with a
///   clear sign bit. x = 0 only for y = ±1, the identity and the point of
///   order 2, which are small-order and refused anyway.
///
/// Otherwise decompression takes the root with the sign the encoding asks
/// for, so compression gives back the same bytes. `reference_strict_point`
/// in the tests is the old rule; a property test holds the two equal.
fn strict_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !y_below_p(bytes) {
        return None;
    }
    let p = CompressedEdwardsY(*bytes).decompress()?;
    if p.is_small_order() {
        return None;
    }
    Some(p)
}

/// Whether `key` can ever verify a signature here: a canonical encoding
/// of a point that is not of small order. A key failing this signs
/// nothing any node accepts, so it is refused wherever one is registered
/// (a node key, ADR 017).
pub fn is_usable_public_key(key: &PublicKey) -> bool {
    strict_point(&key.0).is_some()
}

/// Whether the low 255 bits of `bytes`, little-endian, are below
/// 2^255 - 19. The only values at or above it are 2^255 - 19 ..= 2^255 - 1:
/// first byte at least 0xed, the middle thirty bytes 0xff, and the low
/// seven bits of the last byte all set.
fn y_below_p(bytes: &[u8; 32]) -> bool {
    !(bytes[0] >= 0xed && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f)
}

/// Most public keys whose strict decoding is remembered. A consortium signs
/// with a few hundred operator and validator keys; the cache is emptied
/// when it fills, so it stays bounded whatever keys arrive.
const KEY_CACHE_MAX: usize = 4096;

static KEY_CACHE: std::sync::Mutex<BTreeMap<[u8; 32], EdwardsPoint>> =
    std::sync::Mutex::new(BTreeMap::new());

/// [`strict_point`] for a public key, remembered: decompressing and
/// re-compressing a key is about a third of a batched check, and the same
/// few keys sign everything. The answer is a pure function of the bytes,
/// so caching cannot change a verdict; only valid keys are kept.
fn strict_key(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if let Ok(cache) = KEY_CACHE.lock() {
        if let Some(p) = cache.get(bytes) {
            return Some(*p);
        }
    }
    let p = strict_point(bytes)?;
    if let Ok(mut cache) = KEY_CACHE.lock() {
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(*bytes, p);
    }
    Some(p)
}

fn prepare(item: &SigItem<'_>) -> Result<Prepared, CryptoError> {
    let a = strict_key(&item.public.0).ok_or(CryptoError::BadPublicKey)?;
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&item.signature.0[..32]);
    s_bytes.copy_from_slice(&item.signature.0[32..]);
    let r = strict_point(&r_bytes).ok_or(CryptoError::BadSignature)?;
    let s: Option<Scalar> = Scalar::from_canonical_bytes(s_bytes).into();
    let s = s.ok_or(CryptoError::BadSignature)?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(item.public.0);
    h.update(item.signed_bytes);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Ok(Prepared {
        a,
        r,
        s,
        k,
        s_bytes,
        r_bytes,
        a_bytes: item.public.0,
    })
}

/// The cofactored equation `[8]([s]B - R - [k]A) = 0`.
fn check_single(p: &Prepared) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &(-p.a), &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Verifies one signature.
pub fn verify(
    public: &PublicKey,
    chain_id: &ChainId,
    purpose: Purpose,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let bytes = signing_bytes(chain_id, purpose, message);
    verify_item(&SigItem {
        public,
        signed_bytes: &bytes,
        signature,
    })
}

fn verify_item(item: &SigItem<'_>) -> Result<(), CryptoError> {
    let p = prepare(item)?;
    if check_single(&p) {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// Below this many signatures the batch equation saves nothing. From two
/// on, one multiscalar multiplication beats separate checks; at 4 a 3-of-4
/// quorum certificate took the single path and was slower to verify than
/// a certificate with all four signatures (criterion: 200 against 181 µs).
const BATCH_MIN: usize = 2;
/// Largest batch combined into one multiscalar multiplication; longer
/// inputs are checked in chunks of this size.
const BATCH_CHUNK: usize = 256;

/// Verifies many signatures. The verdict for each item is exactly the
/// verdict [`verify`] would give it.
pub fn verify_batch(items: &[SigItem<'_>]) -> Vec<Result<(), CryptoError>> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(BATCH_CHUNK) {
        out.extend(verify_chunk(chunk));
    }
    out
}

fn verify_chunk(items: &[SigItem<'_>]) -> Vec<Result<(), CryptoError>> {
    let prepared: Vec<Result<Prepared, CryptoError>> = items.iter().map(prepare).collect();
    let ok: Vec<&Prepared> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
    if ok.len() >= BATCH_MIN && check_combined(&ok) {
        // Every structurally valid item satisfies its equation.
        return prepared.into_iter().map(|p| p.map(|_| ())).collect();
    }
    // Small batch, or some item is bad: fall back to the single rule so the
    // caller learns exactly which items fail.
    prepared
        .into_iter()
        .map(|p| {
            let p = p?;
            if check_single(&p) {
                Ok(())
            } else {
                Err(CryptoError::BadSignature)
            }
        })
        .collect()
}

/// Checks `[8](Σ z_i s_i B - Σ z_i R_i - Σ z_i k_i A_i) = 0`, with 128-bit
/// coefficients `z_i` derived by hashing every input in the batch. The
/// coefficients are deterministic, so every node reaches the same verdict,
/// and unpredictable to anyone who has not fixed the whole batch first.
fn check_combined(items: &[&Prepared]) -> bool {
    let seed = batch_seed(items);

    // One term per R, one per distinct key, one for B. The signatures of a
    // batch come from few keys (a consortium's operators), so the items
    // signed by `A` contribute `(Σ c_i) A` instead of `Σ c_i A`. Scalars are
    // reduced mod l, so for a key with a torsion component the two sums
    // can differ by a torsion point; the cofactor [8] removes it, so the
    // tested `[8](...)` and every verdict are the same. The multiplication
    // is up to half as long.
    let mut scalars = Vec::with_capacity(2 * items.len() + 1);
    let mut points = Vec::with_capacity(2 * items.len() + 1);
    let mut key_terms: BTreeMap<[u8; 32], (Scalar, EdwardsPoint)> = BTreeMap::new();
    let mut b_coeff = Scalar::ZERO;
    for (i, p) in items.iter().enumerate() {
        let z = coefficient(&seed, i);
        b_coeff += z * p.s;
        scalars.push(-z);
        points.push(p.r);
        key_terms.entry(p.a_bytes).or_insert((Scalar::ZERO, p.a)).0 -= z * p.k;
    }
    for (c, a) in key_terms.into_values() {
        scalars.push(c);
        points.push(a);
    }
    scalars.push(b_coeff);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// The hash of every input of a batch, from which its coefficients come.
fn batch_seed(items: &[&Prepared]) -> [u8; 64] {
    let mut transcript = Sha512::new();
    transcript.update(b"aidledger/v1/batch-verify");
    transcript.update((items.len() as u64).to_le_bytes());
    for p in items {
        transcript.update(p.r_bytes);
        transcript.update(p.a_bytes);
        transcript.update(p.s_bytes);
        transcript.update(p.k.as_bytes());
    }
    transcript.finalize().into()
}

/// The 128-bit coefficient `z_i` of a batch's item `i`.
fn coefficient(seed: &[u8; 64], i: usize) -> Scalar {
    let mut h = Sha512::new();
    h.update(seed);
    h.update((i as u64).to_le_bytes());
    let d: [u8; 64] = h.finalize().into();
    let mut z_bytes = [0u8; 32];
    z_bytes[..16].copy_from_slice(&d[..16]);
    Scalar::from_bytes_mod_order(z_bytes)
}

/// A transaction whose signature and chain id have been checked. The only
/// way to get one is [`verify_tx`] or [`verify_txs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTx {
    tx: SignedTx,
    id: Hash,
}

impl VerifiedTx {
    pub fn tx(&self) -> &SignedTx {
        &self.tx
    }
    pub fn id(&self) -> Hash {
        self.id
    }
    pub fn into_inner(self) -> SignedTx {
        self.tx
    }
}

/// A transaction with its id and witness hash, each computed once when it
/// is made. Admission carries these from decoding through the screen, the
/// verdict cache and the signature check: each hash encodes the body, and
/// each stage used to compute its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedTx {
    tx: SignedTx,
    id: Hash,
    witness: Hash,
}

impl HashedTx {
    pub fn new(tx: SignedTx) -> HashedTx {
        let id = tx.id();
        let witness = tx.witness_hash_with_id(&id);
        HashedTx { tx, id, witness }
    }
    pub fn tx(&self) -> &SignedTx {
        &self.tx
    }
    pub fn id(&self) -> Hash {
        self.id
    }
    /// [`SignedTx::witness_hash`]: the id and the signature.
    pub fn witness(&self) -> Hash {
        self.witness
    }
    pub fn into_inner(self) -> SignedTx {
        self.tx
    }
}

impl From<SignedTx> for HashedTx {
    fn from(tx: SignedTx) -> HashedTx {
        HashedTx::new(tx)
    }
}

fn check_chain(tx: &SignedTx, id: Hash, chain_id: &ChainId) -> Result<(), CryptoError> {
    if &tx.body.chain_id != chain_id {
        return Err(CryptoError::WrongChain {
            id,
            expected: chain_id.to_string(),
            got: tx.body.chain_id.to_string(),
        });
    }
    Ok(())
}

/// Checks a transaction's chain id and signature.
pub fn verify_tx(tx: SignedTx, chain_id: &ChainId) -> Result<VerifiedTx, CryptoError> {
    let id = tx.id();
    check_chain(&tx, id, chain_id)?;
    verify(
        &tx.body.signer,
        chain_id,
        Purpose::Tx,
        id.as_bytes(),
        &tx.signature,
    )?;
    Ok(VerifiedTx { tx, id })
}

/// Checks many transactions with the batch equation. Each result is what
/// [`verify_tx`] would return for that transaction.
pub fn verify_txs(
    txs: Vec<SignedTx>,
    chain_id: &ChainId,
) -> Vec<Result<VerifiedTx, (SignedTx, CryptoError)>> {
    let txs: Vec<(SignedTx, Hash)> = txs
        .into_iter()
        .map(|tx| {
            let id = tx.id();
            (tx, id)
        })
        .collect();
    verify_with_ids(txs, chain_id)
}

/// [`verify_txs`] over transactions whose ids are computed; private, so
/// that every id here is one this crate computed from its transaction.
fn verify_with_ids(
    txs: Vec<(SignedTx, Hash)>,
    chain_id: &ChainId,
) -> Vec<Result<VerifiedTx, (SignedTx, CryptoError)>> {
    let bytes: Vec<Vec<u8>> = txs
        .iter()
        .map(|(_, id)| signing_bytes(chain_id, Purpose::Tx, id.as_bytes()))
        .collect();
    let items: Vec<SigItem<'_>> = txs
        .iter()
        .zip(&bytes)
        .map(|((tx, _), b)| SigItem {
            public: &tx.body.signer,
            signed_bytes: b,
            signature: &tx.signature,
        })
        .collect();
    let verdicts = verify_batch(&items);
    txs.into_iter()
        .zip(verdicts)
        .map(|((tx, id), v)| {
            if let Err(e) = check_chain(&tx, id, chain_id) {
                return Err((tx, e));
            }
            match v {
                Ok(()) => Ok(VerifiedTx { tx, id }),
                Err(e) => Err((tx, e)),
            }
        })
        .collect()
}

/// Transaction signature verdicts, remembered by witness hash (the id and
/// the signature), for one chain id.
///
/// A verdict is a pure function of the transaction's bytes and the chain
/// id, so a remembered one is exactly what verifying again would give: the
/// cache saves work and can never change an answer. Admission uses it so a
/// transaction gossiped by three peers is verified once, and a resent bad
/// signature is refused without the curve work (ADR 016).
///
/// Bounded: two generations of `capacity` entries each; when the current
/// one fills, the previous is dropped.
pub struct TxVerdictCache {
    chain_id: ChainId,
    capacity: usize,
    inner: std::sync::Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: std::collections::HashMap<Hash, Option<CryptoError>>,
    previous: std::collections::HashMap<Hash, Option<CryptoError>>,
    hits: u64,
}

impl TxVerdictCache {
    pub fn new(chain_id: ChainId, capacity: usize) -> TxVerdictCache {
        TxVerdictCache {
            chain_id,
            capacity: capacity.max(1),
            inner: std::sync::Mutex::new(Generations::default()),
        }
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// How many verdicts were answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.inner.lock().map(|g| g.hits).unwrap_or(0)
    }

    /// The remembered refusal of `tx`'s signature, if it was judged bad.
    pub fn known_bad(&self, tx: &HashedTx) -> Option<CryptoError> {
        let g = self.inner.lock().ok()?;
        let v = g
            .current
            .get(&tx.witness)
            .or_else(|| g.previous.get(&tx.witness))?;
        v.clone()
    }

    /// [`verify_txs`] for this cache's chain, answering from the cache
    /// where a verdict is known and remembering the new ones.
    pub fn verify_txs(
        &self,
        txs: Vec<SignedTx>,
    ) -> Vec<Result<VerifiedTx, (SignedTx, CryptoError)>> {
        self.verify_hashed(txs.into_iter().map(HashedTx::new).collect())
    }

    /// [`TxVerdictCache::verify_txs`] for transactions already hashed.
    pub fn verify_hashed(
        &self,
        txs: Vec<HashedTx>,
    ) -> Vec<Result<VerifiedTx, (SignedTx, CryptoError)>> {
        let mut out: Vec<Option<Result<VerifiedTx, (SignedTx, CryptoError)>>> =
            Vec::with_capacity(txs.len());
        let mut fresh = Vec::new();
        let mut fresh_at = Vec::new();
        {
            let mut g = match self.inner.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            for HashedTx { tx, id, witness } in txs {
                let known = g
                    .current
                    .get(&witness)
                    .or_else(|| g.previous.get(&witness))
                    .cloned();
                match known {
                    Some(None) => {
                        g.hits += 1;
                        out.push(Some(Ok(VerifiedTx { tx, id })));
                    }
                    Some(Some(e)) => {
                        g.hits += 1;
                        out.push(Some(Err((tx, e))));
                    }
                    None => {
                        fresh_at.push((out.len(), witness));
                        out.push(None);
                        fresh.push((tx, id));
                    }
                }
            }
        }
        if !fresh.is_empty() {
            let verdicts = verify_with_ids(fresh, &self.chain_id);
            let mut g = match self.inner.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            for ((slot, witness), v) in fresh_at.into_iter().zip(verdicts) {
                let remembered = match &v {
                    Ok(_) => None,
                    Err((_, e)) => Some(e.clone()),
                };
                if g.current.len() >= self.capacity {
                    g.previous = std::mem::take(&mut g.current);
                }
                g.current.insert(witness, remembered);
                out[slot] = Some(v);
            }
        }
        out.into_iter().flatten().collect()
    }
}

/// Checks a commit certificate against the validator set in force at its
/// height: the expected height and block, strictly ascending known signer
/// indices, at least a quorum of them, and every signature valid.
pub fn verify_certificate(
    cert: &CommitCertificate,
    chain_id: &ChainId,
    validators: &ValidatorSet,
    expected_height: u64,
    expected_block: &Hash,
) -> Result<(), CryptoError> {
    if cert.height != expected_height {
        return Err(CryptoError::CertHeight {
            expected: expected_height,
            got: cert.height,
        });
    }
    if &cert.block_hash != expected_block {
        return Err(CryptoError::CertBlock {
            expected: *expected_block,
            got: cert.block_hash,
        });
    }
    let mut last: Option<u16> = None;
    for s in &cert.signatures {
        if validators.get(s.validator as usize).is_none() {
            return Err(CryptoError::CertUnknownSigner {
                index: s.validator,
                len: validators.len(),
            });
        }
        if last.is_some_and(|l| s.validator <= l) {
            return Err(CryptoError::CertUnsorted { index: s.validator });
        }
        last = Some(s.validator);
    }
    let required = validators.quorum();
    if cert.signatures.len() < required {
        return Err(CryptoError::CertTooFewSignatures {
            got: cert.signatures.len(),
            required,
        });
    }
    // Each signer signed its own time, so each has its own message.
    let messages: Vec<Vec<u8>> = cert
        .signatures
        .iter()
        .map(|s| {
            let vote = codec::encode(&cert.vote(chain_id, s.time));
            signing_bytes(chain_id, Purpose::Commit, &vote)
        })
        .collect();
    let keys: Vec<&PublicKey> = cert
        .signatures
        .iter()
        .filter_map(|s| validators.get(s.validator as usize).map(|v| &v.key))
        .collect();
    let items: Vec<SigItem<'_>> = cert
        .signatures
        .iter()
        .zip(keys)
        .zip(&messages)
        .map(|((s, public), bytes)| SigItem {
            public,
            signed_bytes: bytes,
            signature: &s.signature,
        })
        .collect();
    for (s, v) in cert.signatures.iter().zip(verify_batch(&items)) {
        if v.is_err() {
            let org = validators
                .get(s.validator as usize)
                .map(|v| v.org.to_string())
                .unwrap_or_default();
            return Err(CryptoError::CertBadSignature {
                index: s.validator,
                org,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;

    fn signed(key: &crate::Keypair, chain: &ChainId, nonce: u64) -> SignedTx {
        let body = aidledger_types::TxBody {
            chain_id: chain.clone(),
            nonce,
            signer: key.public(),
            kind: aidledger_types::TxKind::RegisterHousehold,
            payload: vec![7; 40],
        };
        let signature = key.sign(chain, Purpose::Tx, body.id().as_bytes());
        SignedTx { body, signature }
    }

    /// A hashed transaction carries its own id and witness hash, and the
    /// cache's hashed path gives each transaction the verdict of
    /// `verify_tx`, from the curve and from memory alike, with the id
    /// computed from that transaction.
    #[test]
    fn hashed_transactions_keep_their_hashes_and_verdicts() {
        let chain = ChainId::new("hashed-test").unwrap();
        let other = ChainId::new("hashed-other").unwrap();
        let key = crate::Keypair::from_seed([3; 32]);
        let good = signed(&key, &chain, 0);
        let mut forged = signed(&key, &chain, 1);
        forged.body.nonce = 2;
        let foreign = signed(&key, &other, 3);
        let txs = vec![good, forged, foreign];
        for tx in &txs {
            let h = HashedTx::new(tx.clone());
            assert_eq!(h.id(), tx.id());
            assert_eq!(h.witness(), tx.witness_hash());
            assert_eq!(h.tx(), tx);
        }
        let cache = TxVerdictCache::new(chain.clone(), 16);
        for round in 0..2 {
            let got = cache.verify_hashed(txs.iter().cloned().map(HashedTx::from).collect());
            for (tx, v) in txs.iter().zip(got) {
                let single = verify_tx(tx.clone(), &chain);
                match (v, single) {
                    (Ok(a), Ok(b)) => assert_eq!((a.id(), a.tx()), (b.id(), b.tx())),
                    (Err((t, a)), Err(b)) => {
                        assert_eq!(&t, tx);
                        assert_eq!(a.to_string(), b.to_string(), "round {round}");
                    }
                    (a, b) => panic!("round {round}: cache {a:?}, single {b:?}"),
                }
            }
            assert!(
                cache.known_bad(&HashedTx::new(txs[1].clone())).is_some(),
                "the forged signature is remembered as bad"
            );
            assert!(cache.known_bad(&HashedTx::new(txs[0].clone())).is_none());
        }
        assert_eq!(cache.hits(), 3, "the second round came from memory");
    }

    /// The combined equation itself, not the per-item fallback that would
    /// hide a wrong one: with a key's terms merged it holds for a batch of
    /// valid signatures from few keys, forward and reversed, and for a pair
    /// by one key, and fails when one item signed by a repeated key is
    /// replaced by another message's signature from the same key.
    #[test]
    fn the_combined_equation_holds_with_merged_key_terms() {
        let chain = ChainId::new("merged-test").unwrap();
        let keys: Vec<crate::Keypair> = (0..3u8)
            .map(|i| crate::Keypair::from_seed([i + 40; 32]))
            .collect();
        let txs: Vec<SignedTx> = (0..40u64)
            .map(|n| signed(&keys[(n % 7 % 3) as usize], &chain, n))
            .collect();
        let bytes: Vec<Vec<u8>> = txs
            .iter()
            .map(|t| signing_bytes(&chain, Purpose::Tx, t.id().as_bytes()))
            .collect();
        let prepared = |sigs: &[Signature]| -> Vec<Prepared> {
            txs.iter()
                .zip(&bytes)
                .zip(sigs)
                .map(|((t, b), s)| {
                    prepare(&SigItem {
                        public: &t.body.signer,
                        signed_bytes: b,
                        signature: s,
                    })
                    .unwrap()
                })
                .collect()
        };
        let mut sigs: Vec<Signature> = txs.iter().map(|t| t.signature).collect();
        let good = prepared(&sigs);
        assert!(check_combined(&good.iter().collect::<Vec<_>>()));
        assert!(check_combined(&good.iter().rev().collect::<Vec<_>>()));
        assert!(check_combined(&[&good[0], &good[21]]));
        // Transaction 0 and 21 share a key; swap in 21's signature for 0.
        assert_eq!(txs[0].body.signer, txs[21].body.signer);
        sigs[0] = sigs[21];
        let bad = prepared(&sigs);
        assert!(!check_combined(&bad.iter().collect::<Vec<_>>()));
    }

    /// The combined equation as first written, one key term per item.
    /// Same seed and coefficients as [`check_combined`]: what differs is
    /// only the merging of key terms, which is what it is compared for.
    fn reference_combined(items: &[&Prepared]) -> bool {
        let seed = batch_seed(items);
        let mut scalars = Vec::new();
        let mut points = Vec::new();
        let mut b_coeff = Scalar::ZERO;
        for (i, p) in items.iter().enumerate() {
            let z = coefficient(&seed, i);
            b_coeff += z * p.s;
            scalars.push(-z);
            points.push(p.r);
            scalars.push(-(z * p.k));
            points.push(p.a);
        }
        scalars.push(b_coeff);
        points.push(ED25519_BASEPOINT_POINT);
        EdwardsPoint::vartime_multiscalar_mul(scalars, points)
            .mul_by_cofactor()
            .is_identity()
    }

    /// A signature by a mixed-order key `[a]B + T` (T of order 8), computed
    /// honestly: the cofactored equation accepts it.
    fn mixed_order_signed(message: &[u8], nonce: u8) -> (PublicKey, Vec<u8>, Signature) {
        let a = Scalar::from_bytes_mod_order([7; 32]);
        let key = (a * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        let r = Scalar::from_bytes_mod_order([nonce; 32]);
        let r_bytes = (r * ED25519_BASEPOINT_POINT).compress().to_bytes();
        let chain = ChainId::new("merged-test").unwrap();
        let bytes = signing_bytes(&chain, Purpose::Tx, message);
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(key);
        h.update(&bytes);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        (PublicKey(key), bytes, Signature(sig))
    }

    /// Merging a mixed-order key's terms leaves a torsion point that only
    /// the cofactor removes: a batch of its honest signatures over many
    /// messages, with valid signatures by other keys, still holds, as it
    /// does unmerged and one by one.
    #[test]
    fn a_mixed_order_key_signing_many_messages_holds_merged() {
        let signed: Vec<(PublicKey, Vec<u8>, Signature)> = (0..24u8)
            .map(|i| mixed_order_signed(&[i; 12], i + 1))
            .collect();
        let mut prepared: Vec<Prepared> = signed
            .iter()
            .map(|(key, bytes, sig)| {
                prepare(&SigItem {
                    public: key,
                    signed_bytes: bytes,
                    signature: sig,
                })
                .unwrap()
            })
            .collect();
        assert!(prepared.iter().all(check_single));
        let chain = ChainId::new("merged-test").unwrap();
        let honest = crate::Keypair::from_seed([9; 32]);
        let others: Vec<(PublicKey, Vec<u8>, Signature)> = (0..8u8)
            .map(|i| {
                let m = [i; 5];
                (
                    honest.public(),
                    signing_bytes(&chain, Purpose::Tx, &m),
                    honest.sign(&chain, Purpose::Tx, &m),
                )
            })
            .collect();
        prepared.extend(others.iter().map(|(key, bytes, sig)| {
            prepare(&SigItem {
                public: key,
                signed_bytes: bytes,
                signature: sig,
            })
            .unwrap()
        }));
        let all: Vec<&Prepared> = prepared.iter().collect();
        assert!(reference_combined(&all));
        assert!(check_combined(&all));
    }

    /// The rule as first written: decompress, re-compress, compare.    /// The rule as first written: decompress, re-compress, compare.
    fn reference_strict_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
        let p = CompressedEdwardsY(*bytes).decompress()?;
        if p.compress().as_bytes() != bytes || p.is_small_order() {
            return None;
        }
        Some(p)
    }

    fn same_verdict(bytes: &[u8; 32]) {
        let fast = strict_point(bytes).map(|p| p.compress());
        let slow = reference_strict_point(bytes).map(|p| p.compress());
        assert_eq!(fast, slow, "verdicts differ on {}", hex::encode(bytes));
    }

    /// `p + k` with the sign bit set or not: every non-canonical y.
    fn above_p(k: u8, sign: bool) -> [u8; 32] {
        let mut b = [0xffu8; 32];
        b[0] = 0xed + k;
        b[31] = if sign { 0xff } else { 0x7f };
        b
    }

    #[test]
    fn every_y_at_or_above_p_is_refused_like_the_reference() {
        for k in 0..19u8 {
            for sign in [false, true] {
                let b = above_p(k, sign);
                assert!(!y_below_p(&b));
                same_verdict(&b);
            }
        }
        // Just below p: p - 1 is y = -1, a point of order 2.
        let mut b = above_p(0, false);
        b[0] = 0xec;
        assert!(y_below_p(&b));
        same_verdict(&b);
    }

    #[test]
    fn small_order_points_and_their_aliases_are_refused_like_the_reference() {
        for t in EIGHT_TORSION.iter() {
            let mut b = t.compress().to_bytes();
            same_verdict(&b);
            b[31] ^= 0x80;
            same_verdict(&b);
        }
        for y in [0u8, 1] {
            for sign in [0u8, 0x80] {
                let mut b = [0u8; 32];
                b[0] = y;
                b[31] = sign;
                same_verdict(&b);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The merged equation against the one it replaced, on batches
        /// from three honest keys and the mixed-order key, with
        /// signatures swapped between items (so a bad item often shares its
        /// key with good ones): the same answer on every batch, true or
        /// false, without the per-item fallback in between.
        #[test]
        fn merged_key_terms_answer_like_the_reference(
            picks in proptest::collection::vec((0u8..4, any::<u8>(), 0u8..6), 2..48)
        ) {
            let chain = ChainId::new("merged-test").unwrap();
            let keys: Vec<crate::Keypair> =
                (0..3u8).map(|i| crate::Keypair::from_seed([i + 60; 32])).collect();
            let mut signed: Vec<(PublicKey, Vec<u8>, Signature)> = picks
                .iter()
                .map(|&(key, msg, _)| {
                    let m = [msg, key];
                    match keys.get(key as usize) {
                        Some(k) => (
                            k.public(),
                            signing_bytes(&chain, Purpose::Tx, &m),
                            k.sign(&chain, Purpose::Tx, &m),
                        ),
                        None => mixed_order_signed(&m, msg.wrapping_add(1)),
                    }
                })
                .collect();
            // Kind 0: this item carries the next item's signature.
            for i in 0..picks.len() {
                if picks[i].2 == 0 {
                    signed[i].2 = signed[(i + 1) % picks.len()].2;
                }
            }
            let prepared: Vec<Prepared> = signed
                .iter()
                .filter_map(|(key, bytes, sig)| {
                    prepare(&SigItem {
                        public: key,
                        signed_bytes: bytes,
                        signature: sig,
                    })
                    .ok()
                })
                .collect();
            let all: Vec<&Prepared> = prepared.iter().collect();
            let every_single = all.iter().all(|p| check_single(p));
            prop_assert_eq!(check_combined(&all), reference_combined(&all));
            prop_assert_eq!(check_combined(&all), every_single);
        }

        #[test]
        fn random_bytes_get_the_reference_verdict(b in any::<[u8; 32]>()) {
            same_verdict(&b);
        }

        #[test]
        fn points_and_their_sign_flips_get_the_reference_verdict(
            seed in any::<[u8; 32]>(),
            torsion in 0usize..8,
        ) {
            let p = ED25519_BASEPOINT_POINT * Scalar::from_bytes_mod_order(seed)
                + EIGHT_TORSION[torsion];
            let mut b = p.compress().to_bytes();
            same_verdict(&b);
            b[31] ^= 0x80;
            same_verdict(&b);
        }
    }
}
