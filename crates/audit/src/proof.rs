//! Payment proofs a household or county office checks offline (ADR 020).
//!
//! A proof shows that program P paid household H for period N: the
//! disbursement event the contracts emitted, a Merkle path from it to the
//! `event_root` of a block header, that header's commit certificate, and
//! the validator-set changes from genesis to the set that certified it.
//! When the bank confirmed the payment, the same for the settlement's
//! expenditure event. [`verify_payment_proof`] checks one against nothing
//! but the genesis document: no node, no network.
//!
//! [`payment_proof`] builds one from a node's store. The node is not
//! trusted by the proof's reader: everything the proof claims is checked
//! by the verifier, and the builder checks its own answer the same way
//! before it hands it out.
//!
//! What a proof cannot show, offline: that no later block undid something.
//! Nothing undoes a payment (a release is never deleted), but a proof says
//! nothing of what came after its block. It also trusts, like a snapshot
//! join (ADR 017), that no quorum of a validator set that has since been
//! replaced signs a block it never committed.

use serde::{Deserialize, Serialize};

use aidledger_contracts::events::{event_leaves, EventBody, MoneyEvent, MoneyFlow, Party, Receipt};
use aidledger_contracts::model::{Program, Recipient, Release, ReleaseSource, SettlementStatus};
use aidledger_contracts::{keys, Event, Genesis};
use aidledger_crypto::{verify_certificate, SetHistory};
use aidledger_storage::Store;
use aidledger_types::merkle::{self, MerkleProof};
use aidledger_types::snapshot::{SetChange, SET_CHANGES_MAX};
use aidledger_types::{
    codec, BlockHeader, ChainId, CommitCertificate, Currency, Hash, Slug, HEADER_VERSION,
    HEADER_VERSION_PIPELINED,
};

use crate::state::StoreState;

/// The `format` of a proof file.
pub const PROOF_FORMAT: &str = "aidledger payment proof v1";
/// Largest proof file read.
pub const PROOF_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Most validator-set changes a proof carries.
pub const SET_CHANGES_PROOF_MAX: usize = 64 * SET_CHANGES_MAX;
/// Most ledger entries of one program read to find one payment.
const LEDGER_SCAN_MAX: usize = 10_000_000;

/// A payment proof, as written to a file (JSON).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PaymentProof {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    pub chain_id: ChainId,
    pub genesis_hash: Hash,
    /// The code a printed receipt carries (its QR code): the payment's
    /// facts and its event's hash, see [`receipt_code`].
    pub receipt_code: String,
    /// What the proof claims, for display. The verifier recomputes every
    /// field from the proven events and refuses a proof whose summary
    /// differs, except `decimals`, which is display only (the program's
    /// currency minor unit; no event carries it).
    pub summary: ProofSummary,
    /// The disbursement to the household.
    pub payment: EventInclusion,
    /// The bank's confirmation of it, when there is one.
    pub settlement: Option<EventInclusion>,
    /// The validator-set changes from genesis up to the last proven
    /// block, in height order.
    pub set_changes: Vec<SetChange>,
}

/// The facts a proof proves, in plain fields.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProofSummary {
    pub household: Hash,
    pub program: Slug,
    pub entitlement: Slug,
    pub period: u32,
    pub release: u64,
    /// Minor units, as a decimal string.
    pub amount: String,
    pub currency: Currency,
    /// Fractional digits of the currency's minor unit (display only).
    pub decimals: u8,
    /// The block that paid.
    pub height: u64,
    /// Its time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The bank confirmed the payment.
    pub settled: bool,
    /// The block holding the confirmation.
    pub settlement_height: Option<u64>,
}

/// One event, its place in its block's event tree, and the certified
/// header whose `event_root` the path leads to.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventInclusion {
    pub event: Event,
    pub path: MerkleProof,
    pub header: BlockHeader,
    pub certificate: CommitCertificate,
}

/// Which payment to prove.
#[derive(Clone, Debug)]
pub struct ProofRequest {
    pub household: Hash,
    pub program: Slug,
    pub period: u32,
    /// Needed only when the household has more than one entitlement of
    /// the program paying that period.
    pub entitlement: Option<Slug>,
    /// The release that paid, when the asker knows it (the explorer
    /// does): the proof is then built from that release's block alone,
    /// without searching the program's ledger. It must be the payment
    /// the other fields name.
    pub release: Option<u64>,
}

/// Why no proof could be built.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// No such payment on the chain.
    #[error("{0}")]
    NotFound(String),
    /// More than one payment matches; the request must name one.
    #[error("{0}")]
    Ambiguous(String),
    /// This store cannot prove it (its history starts later, or the block
    /// was written before event roots).
    #[error("{0}")]
    Unavailable(String),
    /// The store's own data is inconsistent.
    #[error("{0}")]
    Store(String),
}

/// Why a proof does not check: the step that failed and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct ProofFailure {
    pub step: &'static str,
    pub reason: String,
}

fn fail(step: &'static str, reason: impl Into<String>) -> ProofFailure {
    ProofFailure {
        step,
        reason: reason.into(),
    }
}

/// The receipt code of a payment: one line naming the chain, the payment
/// and the hash of its event, which binds every other field of it. A
/// printed receipt carries it as text and as a QR code; `aidledger proof
/// verify FILE --receipt CODE` checks a proof file against it. It leaves
/// the settlement out, so a receipt printed before the bank confirmed
/// still matches a proof downloaded after.
pub fn receipt_code(
    chain_id: &ChainId,
    payment: &MoneyEvent,
    household: &Hash,
    event: &Event,
) -> String {
    format!(
        "AIDLEDGER-PAYMENT-1;chain={};program={};entitlement={};period={};household={};amount={} {};release={};height={};event={}",
        chain_id,
        payment.program,
        payment.entitlement.as_ref().map(Slug::as_str).unwrap_or(""),
        payment.period.map(|p| p.to_string()).unwrap_or_default(),
        household.to_hex(),
        payment.amount.minor(),
        payment.currency,
        payment.release.map(|r| r.to_string()).unwrap_or_default(),
        event.height,
        event.leaf_hash().to_hex(),
    )
}

fn store_err(e: impl std::fmt::Display) -> ProofError {
    ProofError::Store(e.to_string())
}

/// Builds the proof of one entitlement payment from a store that holds
/// the block that paid (an archive node, or one whose history reaches
/// back that far). The proof is checked with [`verify_payment_proof`]
/// before it is returned, so a store that disagrees with its own headers
/// gives an error, never a proof that does not check.
pub fn payment_proof(store: &dyn Store, req: &ProofRequest) -> Result<PaymentProof, ProofError> {
    let (genesis_hash, genesis_bytes) = store
        .genesis()
        .map_err(store_err)?
        .ok_or_else(|| ProofError::Store("this store holds no genesis".into()))?;
    let genesis: Genesis = codec::decode(&genesis_bytes).map_err(store_err)?;
    let state = StoreState(store);
    let program: Program = crate::report::record(&state, &keys::program(&req.program))
        .map_err(store_err)?
        .ok_or_else(|| ProofError::NotFound(format!("no program {}", req.program)))?;
    let (payment, paid, release) = match req.release {
        Some(id) => {
            let release: Release = crate::report::record(&state, &keys::release(id))
                .map_err(store_err)?
                .ok_or_else(|| ProofError::NotFound(format!("no release {id}")))?;
            let named = release.recipient == Recipient::Household(req.household)
                && release.program == req.program
                && matches!(&release.source, ReleaseSource::Entitlement { entitlement, period }
                    if *period == req.period
                        && req.entitlement.as_ref().is_none_or(|e| e == entitlement));
            if !named {
                return Err(ProofError::NotFound(format!(
                    "release {id} is not program {}'s payment to household {} for period {}",
                    req.program,
                    req.household.to_hex(),
                    req.period
                )));
            }
            let paid = include_where(store, release.height, |m| {
                m.flow == MoneyFlow::Disbursement && m.release == Some(id)
            })?;
            let EventBody::Money(m) = &paid.event.body else {
                return Err(ProofError::Store("the payment is not a money event".into()));
            };
            (m.clone(), paid, release)
        }
        None => {
            let payment = find_payment(store, req)?;
            let id = payment
                .release
                .ok_or_else(|| ProofError::Store("a disbursement names no release".into()))?;
            let release: Release = crate::report::record(&state, &keys::release(id))
                .map_err(store_err)?
                .ok_or_else(|| ProofError::Store(format!("release {id} is missing")))?;
            let event = Event {
                height: payment.height,
                tx: payment.tx,
                body: EventBody::Money(payment.clone()),
            };
            let paid = include(store, &event)?;
            (payment, paid, release)
        }
    };
    let release_id = release.id;
    let event = paid.event.clone();
    let settlement = match &release.settlement {
        Some(s) if s.status == SettlementStatus::Confirmed => {
            Some(include_settlement(store, s.height, release_id)?)
        }
        _ => None,
    };
    let last = settlement
        .as_ref()
        .map_or(paid.header.height, |s| s.header.height);
    let set_changes = set_changes_before(store, last)?;
    let summary = ProofSummary {
        household: req.household,
        program: payment.program.clone(),
        entitlement: payment.entitlement.clone().ok_or_else(|| {
            ProofError::Store("an entitlement payment names no entitlement".into())
        })?,
        period: req.period,
        release: release_id,
        amount: payment.amount.minor().to_string(),
        currency: payment.currency,
        decimals: program.decimals,
        height: payment.height,
        time_ms: paid.header.timestamp.ms(),
        settled: settlement.is_some(),
        settlement_height: settlement.as_ref().map(|s| s.header.height),
    };
    let proof = PaymentProof {
        format: PROOF_FORMAT.into(),
        chain_id: genesis.chain_id.clone(),
        genesis_hash,
        receipt_code: receipt_code(&genesis.chain_id, &payment, &req.household, &event),
        summary,
        payment: paid,
        settlement,
        set_changes,
    };
    verify_payment_proof(&proof, &genesis).map_err(|e| {
        ProofError::Store(format!("the proof this store gives does not check: {e}"))
    })?;
    let size = serde_json::to_vec(&proof).map_err(store_err)?.len() as u64;
    if size > PROOF_MAX_BYTES {
        return Err(ProofError::Unavailable(format!(
            "the proof would be {size} bytes, over the {PROOF_MAX_BYTES} a verifier reads (too \
             many validator-set changes since genesis)"
        )));
    }
    Ok(proof)
}

/// The validator-set changes at heights below `height`: those a verifier
/// follows to learn the set that certified block `height`.
fn set_changes_before(store: &dyn Store, height: u64) -> Result<Vec<SetChange>, ProofError> {
    let mut out: Vec<SetChange> = Vec::new();
    loop {
        let after = out.last().map_or(0, |c| c.header.height);
        let page = store
            .set_changes(after, SET_CHANGES_MAX)
            .map_err(store_err)?;
        let Some(top) = page.last().map(|c| c.header.height) else {
            return Ok(out);
        };
        if top <= after {
            return Err(ProofError::Store(
                "validator-set changes out of order".into(),
            ));
        }
        out.extend(page.into_iter().filter(|c| c.header.height < height));
        if top >= height {
            return Ok(out);
        }
        if out.len() > SET_CHANGES_PROOF_MAX {
            return Err(ProofError::Store("too many validator-set changes".into()));
        }
    }
}

/// The disbursement to the household for the period, from the program's
/// ledger.
fn find_payment(store: &dyn Store, req: &ProofRequest) -> Result<MoneyEvent, ProofError> {
    let state = StoreState(store);
    let mut found: Vec<MoneyEvent> = Vec::new();
    let mut seen = 0usize;
    let mut bad: Option<String> = None;
    crate::state::for_each(&state, &keys::ledger_prefix(&req.program), |k, v| {
        seen += 1;
        if seen > LEDGER_SCAN_MAX {
            bad = Some("the program's ledger is too long to search".into());
            return false;
        }
        match codec::decode::<MoneyEvent>(v) {
            Ok(e) => {
                let wanted = e.flow == MoneyFlow::Disbursement
                    && e.to == Party::Household(req.household)
                    && e.period == Some(req.period)
                    && e.entitlement.is_some()
                    && req
                        .entitlement
                        .as_ref()
                        .is_none_or(|x| e.entitlement.as_ref() == Some(x));
                if wanted {
                    found.push(e);
                }
                true
            }
            Err(err) => {
                bad = Some(format!(
                    "ledger entry {}: {err}",
                    crate::failure::show_key(k)
                ));
                false
            }
        }
    })
    .map_err(store_err)?;
    if let Some(b) = bad {
        return Err(ProofError::Store(b));
    }
    match found.len() {
        0 => Err(ProofError::NotFound(format!(
            "program {} paid household {} nothing for period {}{}",
            req.program,
            req.household.to_hex(),
            req.period,
            req.entitlement
                .as_ref()
                .map(|e| format!(" under entitlement {e}"))
                .unwrap_or_default()
        ))),
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<String> = found
                .iter()
                .filter_map(|e| e.entitlement.as_ref().map(|s| s.to_string()))
                .collect();
            Err(ProofError::Ambiguous(format!(
                "household {} was paid for period {} under several entitlements of program {} \
                 ({}); name one with entitlement",
                req.household.to_hex(),
                req.period,
                req.program,
                names.join(", ")
            )))
        }
    }
}

/// Every event of the block at `height`, in the order its header commits
/// to.
fn block_events(store: &dyn Store, height: u64) -> Result<(BlockHeader, Vec<Event>), ProofError> {
    let base = store.base().map_err(store_err)?;
    let block = store.block(height).map_err(store_err)?.ok_or_else(|| {
        ProofError::Unavailable(format!(
            "this node's history starts at height {base}, after block {height}: ask a node that \
             keeps all blocks (an archive)"
        ))
    })?;
    if height == base && base > 1 {
        return Err(ProofError::Unavailable(format!(
            "block {height} is this node's snapshot base; its events are not kept here: ask a \
             node that keeps all blocks (an archive)"
        )));
    }
    let ids: Vec<Hash> = block.txs.iter().map(|t| t.id()).collect();
    let mut receipts: Vec<Receipt> = Vec::with_capacity(ids.len());
    for (i, found) in store.tx_locations(&ids).into_iter().enumerate() {
        let (_, r) = found
            .map_err(store_err)?
            .ok_or_else(|| ProofError::Store(format!("tx {i} of block {height} is not indexed")))?;
        receipts.push(codec::decode(&r).map_err(store_err)?);
    }
    let own: Vec<Event> = match store.block_events(height).map_err(store_err)? {
        Some(b) => codec::decode_with_limit(&b, aidledger_storage::BLOCK_EVENTS_MAX_BYTES)
            .map_err(store_err)?,
        None => {
            return Err(ProofError::Store(format!(
                "block {height}'s own events are missing"
            )))
        }
    };
    let events = receipts
        .iter()
        .flat_map(|r| r.events.iter().cloned())
        .chain(own)
        .collect();
    Ok((block.header, events))
}

fn inclusion(
    store: &dyn Store,
    header: BlockHeader,
    events: &[Event],
    index: usize,
) -> Result<EventInclusion, ProofError> {
    let height = header.height;
    let leaves = event_leaves(std::iter::empty(), events);
    let path = merkle::prove(&leaves, index)
        .ok_or_else(|| ProofError::Store("event index out of range".into()))?;
    let certificate = store
        .certificate(height)
        .map_err(store_err)?
        .ok_or_else(|| ProofError::Store(format!("block {height}'s certificate is missing")))?;
    Ok(EventInclusion {
        event: events[index].clone(),
        path,
        header,
        certificate,
    })
}

fn include(store: &dyn Store, event: &Event) -> Result<EventInclusion, ProofError> {
    let (header, events) = block_events(store, event.height)?;
    let index = events.iter().position(|e| e == event).ok_or_else(|| {
        ProofError::Store(format!(
            "block {} does not hold the payment its ledger records",
            event.height
        ))
    })?;
    inclusion(store, header, &events, index)
}

/// The last money event of block `height` that `wanted` picks.
fn include_where(
    store: &dyn Store,
    height: u64,
    wanted: impl Fn(&MoneyEvent) -> bool,
) -> Result<EventInclusion, ProofError> {
    let (header, events) = block_events(store, height)?;
    let index = events
        .iter()
        .rposition(|e| matches!(&e.body, EventBody::Money(m) if wanted(m)))
        .ok_or_else(|| {
            ProofError::Store(format!(
                "block {height} does not hold the money movement its release record names"
            ))
        })?;
    inclusion(store, header, &events, index)
}

fn include_settlement(
    store: &dyn Store,
    height: u64,
    release: u64,
) -> Result<EventInclusion, ProofError> {
    include_where(store, height, |m| {
        m.flow == MoneyFlow::Expenditure && m.release == Some(release)
    })
}

/// What a proof proved.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct VerifiedPayment {
    pub chain_id: ChainId,
    pub genesis_hash: Hash,
    pub receipt_code: String,
    pub summary: ProofSummary,
    /// The hash of the block that paid.
    pub block_hash: Hash,
    /// The hash of the block that settled, when settled.
    pub settlement_block_hash: Option<Hash>,
    /// Validator-set changes followed from genesis.
    pub set_changes: usize,
}

/// Checks a proof against the genesis document alone, in the order ADR
/// 020 gives: the genesis, the set changes, each certificate, each Merkle
/// path, and the events themselves.
pub fn verify_payment_proof(
    proof: &PaymentProof,
    genesis: &Genesis,
) -> Result<VerifiedPayment, ProofFailure> {
    if proof.format != PROOF_FORMAT {
        return Err(fail(
            "format",
            format!("{:?} is not {PROOF_FORMAT:?}", proof.format),
        ));
    }
    let chain = &genesis.chain_id;
    let genesis_hash = genesis.hash();
    if proof.genesis_hash != genesis_hash {
        return Err(fail(
            "genesis",
            format!(
                "the proof is for genesis {}, the file given is {}",
                proof.genesis_hash.short(),
                genesis_hash.short()
            ),
        ));
    }
    if &proof.chain_id != chain {
        return Err(fail(
            "genesis",
            format!(
                "the proof is for chain {}, the genesis is {chain}",
                proof.chain_id
            ),
        ));
    }
    if proof.set_changes.len() > SET_CHANGES_PROOF_MAX {
        return Err(fail("validator sets", "too many set changes"));
    }
    let mut history = SetHistory::genesis(genesis.validators.clone());
    history
        .follow(chain, &proof.set_changes)
        .map_err(|e| fail("validator sets", e.to_string()))?;

    let paid = check_inclusion(chain, &history, &proof.payment, "payment")?;
    let EventBody::Money(m) = &proof.payment.event.body else {
        return Err(fail("payment", "the proven event is not a money movement"));
    };
    let s = &proof.summary;
    if s.decimals > aidledger_contracts::programs::MAX_DECIMALS {
        return Err(fail(
            "summary",
            format!(
                "{} decimals; a currency has at most {}",
                s.decimals,
                aidledger_contracts::programs::MAX_DECIMALS
            ),
        ));
    }
    let period = m.period;
    let facts_hold = m.flow == MoneyFlow::Disbursement
        && m.to == Party::Household(s.household)
        && m.program == s.program
        && m.entitlement.as_ref() == Some(&s.entitlement)
        && period == Some(s.period)
        && m.release == Some(s.release)
        && m.amount.minor().to_string() == s.amount
        && m.currency == s.currency
        && m.height == paid.height
        && proof.payment.event.height == paid.height
        && s.height == paid.height
        && s.time_ms == paid.timestamp.ms();
    if !facts_hold {
        return Err(fail(
            "payment",
            format!(
                "the proven event is not the payment the proof claims: it is a {:?} of {} {} to \
                 {:?} for period {:?}",
                m.flow,
                m.amount.minor(),
                m.currency,
                m.to,
                m.period
            ),
        ));
    }
    let mut settlement_block_hash = None;
    match (&proof.settlement, s.settled) {
        (Some(inc), true) => {
            let h = check_inclusion(chain, &history, inc, "settlement")?;
            let EventBody::Money(x) = &inc.event.body else {
                return Err(fail(
                    "settlement",
                    "the proven event is not a money movement",
                ));
            };
            let holds = x.flow == MoneyFlow::Expenditure
                && x.release == Some(s.release)
                && x.program == m.program
                && x.amount == m.amount
                && x.currency == m.currency
                && h.height >= paid.height
                && s.settlement_height == Some(h.height);
            if !holds {
                return Err(fail(
                    "settlement",
                    "the proven event is not the bank's confirmation of this payment",
                ));
            }
            settlement_block_hash = Some(h.hash());
        }
        (None, false) if s.settlement_height.is_none() => {}
        _ => {
            return Err(fail(
                "settlement",
                "the summary and the proven settlement disagree",
            ))
        }
    }
    let code = receipt_code(chain, m, &s.household, &proof.payment.event);
    if code != proof.receipt_code {
        return Err(fail(
            "receipt code",
            "the receipt code is not the proven payment's",
        ));
    }
    Ok(VerifiedPayment {
        chain_id: chain.clone(),
        genesis_hash,
        receipt_code: code,
        summary: s.clone(),
        block_hash: paid.hash(),
        settlement_block_hash,
        set_changes: proof.set_changes.len(),
    })
}

/// Checks one event's path and its header's certificate; returns the
/// header.
fn check_inclusion<'a>(
    chain: &ChainId,
    history: &SetHistory,
    inc: &'a EventInclusion,
    step: &'static str,
) -> Result<&'a BlockHeader, ProofFailure> {
    let h = &inc.header;
    if &h.chain_id != chain {
        return Err(fail(step, format!("its block is for chain {}", h.chain_id)));
    }
    if h.version != HEADER_VERSION && h.version != HEADER_VERSION_PIPELINED {
        return Err(fail(
            step,
            format!(
                "its block has header format {}, this build checks {HEADER_VERSION} and \
                 {HEADER_VERSION_PIPELINED}",
                h.version
            ),
        ));
    }
    let set = history.at(h.height);
    if h.validator_set_hash != set.hash() {
        return Err(fail(
            step,
            format!(
                "block {} names another certifying set than the one the set changes lead to \
                 (a set change is missing)",
                h.height
            ),
        ));
    }
    verify_certificate(&inc.certificate, chain, set, h.height, &h.hash())
        .map_err(|e| fail(step, format!("block {}: certificate: {e}", h.height)))?;
    if !merkle::verify(
        &h.event_root,
        u64::from(h.event_count),
        &inc.event.leaf_hash(),
        &inc.path,
    ) {
        return Err(fail(
            step,
            format!(
                "the event's Merkle path does not lead to block {}'s event root",
                h.height
            ),
        ));
    }
    if inc.event.height != h.height {
        return Err(fail(step, "the event names another height than its block"));
    }
    Ok(h)
}

/// Reads a proof file's JSON, refusing anything larger than
/// [`PROOF_MAX_BYTES`].
pub fn parse_proof(bytes: &[u8]) -> Result<PaymentProof, ProofFailure> {
    if bytes.len() as u64 > PROOF_MAX_BYTES {
        return Err(fail("file", format!("larger than {PROOF_MAX_BYTES} bytes")));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| fail("file", format!("not JSON: {e}")))?;
    let proof: PaymentProof = serde_json::from_value(value.clone())
        .map_err(|e| fail("file", format!("not a payment proof: {e}")))?;
    // Every field, at every depth, is one the proof's types write: an
    // unknown field, or one written in another form, is refused, not
    // ignored.
    let again = serde_json::to_value(&proof).map_err(|e| fail("file", e.to_string()))?;
    if again != value {
        return Err(fail(
            "file",
            "it holds fields a payment proof does not have, or writes them in another form",
        ));
    }
    Ok(proof)
}
