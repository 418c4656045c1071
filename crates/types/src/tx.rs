//! The transaction envelope, roles and transaction kinds.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::{domain, hash_parts, Hash};
use crate::values::{ChainId, PublicKey, Signature};

/// Largest encoded signed transaction accepted anywhere: 64 KiB.
pub const TX_MAX_BYTES: usize = 64 * 1024;
/// Largest payload inside a transaction.
pub const TX_PAYLOAD_MAX_BYTES: usize = 60 * 1024;

/// An operator's role. An account holds a set of roles; each transaction
/// kind names the roles allowed to sign it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    ProgramOfficer,
    Approver,
    Disburser,
    Registrar,
    Attester,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::ProgramOfficer,
        Role::Approver,
        Role::Disburser,
        Role::Registrar,
        Role::Attester,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ProgramOfficer => "program-officer",
            Role::Approver => "approver",
            Role::Disburser => "disburser",
            Role::Registrar => "registrar",
            Role::Attester => "attester",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Result<Role, crate::TypeError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| crate::TypeError::Invalid {
                what: "role",
                reason: format!(
                    "{:?}: expected one of admin, program-officer, approver, disburser, registrar, attester, auditor",
                    crate::hash::truncate(s)
                ),
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every kind of transaction. The kind travels in the envelope, so admission
/// can check the signer's role before decoding the payload. The payload
/// types live with the contract modules that handle them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TxKind {
    // Governance: actions that need a threshold of organisation admins.
    GovPropose,
    GovApprove,
    // Funds.
    CreateProgram,
    Deposit,
    SubmitApplication,
    ApproveApplication,
    RejectApplication,
    CreatePlan,
    Attest,
    RegisterHousehold,
    UpdateHousehold,
    SetEntitlement,
    Settle,
    CancelTranche,
    ResolveAnomaly,
    CloseProgram,
    // Appended: the envelope encodes the kind by its position.
    ApprovePlan,
}

impl TxKind {
    pub const ALL: [TxKind; 17] = [
        TxKind::GovPropose,
        TxKind::GovApprove,
        TxKind::CreateProgram,
        TxKind::Deposit,
        TxKind::SubmitApplication,
        TxKind::ApproveApplication,
        TxKind::RejectApplication,
        TxKind::CreatePlan,
        TxKind::Attest,
        TxKind::RegisterHousehold,
        TxKind::UpdateHousehold,
        TxKind::SetEntitlement,
        TxKind::Settle,
        TxKind::CancelTranche,
        TxKind::ResolveAnomaly,
        TxKind::CloseProgram,
        TxKind::ApprovePlan,
    ];

    /// The roles allowed to sign this kind. Checked at admission and again,
    /// authoritatively, during block execution.
    pub fn allowed_roles(self) -> &'static [Role] {
        crate::authz::rule(self).roles
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::GovPropose => "gov-propose",
            TxKind::GovApprove => "gov-approve",
            TxKind::CreateProgram => "create-program",
            TxKind::Deposit => "deposit",
            TxKind::SubmitApplication => "submit-application",
            TxKind::ApproveApplication => "approve-application",
            TxKind::RejectApplication => "reject-application",
            TxKind::CreatePlan => "create-plan",
            TxKind::Attest => "attest",
            TxKind::RegisterHousehold => "register-household",
            TxKind::UpdateHousehold => "update-household",
            TxKind::SetEntitlement => "set-entitlement",
            TxKind::Settle => "settle",
            TxKind::CancelTranche => "cancel-tranche",
            TxKind::ResolveAnomaly => "resolve-anomaly",
            TxKind::CloseProgram => "close-program",
            TxKind::ApprovePlan => "approve-plan",
        }
    }
}

impl fmt::Display for TxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unsigned body of a transaction: everything the signature covers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TxBody {
    pub chain_id: ChainId,
    /// The signer's next nonce. Each account's nonces run 0, 1, 2, ...
    pub nonce: u64,
    pub signer: PublicKey,
    pub kind: TxKind,
    /// The kind's payload, in the canonical encoding.
    pub payload: Vec<u8>,
}

impl TxBody {
    /// The transaction id: SHA-256 of the canonical body under the tx-id
    /// domain tag. The signature signs this id.
    pub fn id(&self) -> Hash {
        hash_parts(domain::TX_ID, &[&codec::encode(self)])
    }
}

/// A signed transaction as it travels and is stored. Nothing about it is
/// trusted until `aidledger_crypto::verify_tx` turns it into a `VerifiedTx`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedTx {
    pub body: TxBody,
    pub signature: Signature,
}

impl SignedTx {
    pub fn id(&self) -> Hash {
        self.body.id()
    }

    /// The hash of the whole signed transaction, signature included: the
    /// leaf of a block's transaction Merkle tree.
    pub fn witness_hash(&self) -> Hash {
        self.witness_hash_with_id(&self.id())
    }

    /// [`SignedTx::witness_hash`] when the id is known already; `id` must
    /// be `self.id()`.
    pub fn witness_hash_with_id(&self, id: &Hash) -> Hash {
        hash_parts(domain::TX_WITNESS, &[id.as_bytes(), &self.signature.0])
    }

    /// Decodes a transaction from untrusted bytes with the transaction size
    /// limit; checks the payload bound too.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, crate::TypeError> {
        let tx: SignedTx = codec::decode_with_limit(bytes, TX_MAX_BYTES)?;
        tx.check_limits()?;
        Ok(tx)
    }

    /// The limits [`SignedTx::decode`] enforces beyond the byte limit, for
    /// transactions decoded inside a larger message (a gossip batch).
    pub fn check_limits(&self) -> Result<(), crate::TypeError> {
        if self.body.payload.len() > TX_PAYLOAD_MAX_BYTES {
            return Err(crate::TypeError::Invalid {
                what: "transaction",
                reason: format!(
                    "payload is {} bytes, over the limit of {TX_PAYLOAD_MAX_BYTES}",
                    self.body.payload.len()
                ),
            });
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}
