//! Transaction payloads, one per `TxKind`. A payload travels as
//! `codec::encode` bytes inside `TxBody::payload` and is decoded strictly
//! (canonical bytes only) before any module sees it.

use aidledger_types::{
    codec, Amount, Currency, Hash, OrgId, RegionCode, Slug, Text, Timestamp, TxKind,
};
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::model::{
    ApprovalPolicy, AttestValue, Eligibility, GovAction, HouseholdStatus, Recipient, Subject,
};
use crate::ContractError;

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GovPropose {
    pub action: GovAction,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GovApprove {
    pub proposal: u64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CreateProgram {
    pub id: Slug,
    pub title: Text,
    pub currency: Currency,
    pub decimals: u8,
    pub funding_orgs: Vec<OrgId>,
    pub budget_ceiling: Amount,
    pub policy: ApprovalPolicy,
    pub region_scope: RegionCode,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Deposit {
    pub program: Slug,
    pub amount: Amount,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SubmitApplication {
    pub id: Slug,
    pub program: Slug,
    /// Must be the signer's organisation.
    pub applicant: OrgId,
    pub region: RegionCode,
    pub requested: Amount,
    pub purpose: Text,
    pub doc_hash: Hash,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ApplicationVote {
    pub application: Slug,
    pub note: Text,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TrancheSpec {
    pub id: Slug,
    pub amount: Amount,
    pub recipient: Recipient,
    pub condition: Condition,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CreatePlan {
    pub id: Slug,
    pub program: Slug,
    pub application: Option<Slug>,
    pub tranches: Vec<TrancheSpec>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Attest {
    pub subject: Subject,
    pub claim: Slug,
    pub value: AttestValue,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RegisterHousehold {
    pub id: Hash,
    pub region: RegionCode,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UpdateHousehold {
    pub id: Hash,
    pub region: RegionCode,
    pub status: HouseholdStatus,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SetEntitlement {
    pub id: Slug,
    pub program: Slug,
    pub amount: Amount,
    pub period_ms: u64,
    pub start: Timestamp,
    pub periods: u32,
    pub eligibility: Eligibility,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Settle {
    pub release: u64,
    pub amount: Amount,
    /// SHA-256 of the bank's payment reference.
    pub bank_ref: Hash,
}

/// An approval of a plan that has no approved application.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ApprovePlan {
    pub plan: Slug,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CancelTranche {
    pub plan: Slug,
    pub tranche: Slug,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ResolveAnomaly {
    pub anomaly: u64,
    pub note: Text,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CloseProgram {
    pub program: Slug,
}

/// Any payload, tagged by its kind.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Payload {
    GovPropose(GovPropose),
    GovApprove(GovApprove),
    CreateProgram(CreateProgram),
    Deposit(Deposit),
    SubmitApplication(SubmitApplication),
    ApproveApplication(ApplicationVote),
    RejectApplication(ApplicationVote),
    CreatePlan(CreatePlan),
    Attest(Attest),
    RegisterHousehold(RegisterHousehold),
    UpdateHousehold(UpdateHousehold),
    SetEntitlement(SetEntitlement),
    Settle(Settle),
    CancelTranche(CancelTranche),
    ResolveAnomaly(ResolveAnomaly),
    CloseProgram(CloseProgram),
    ApprovePlan(ApprovePlan),
}

impl Payload {
    pub fn kind(&self) -> TxKind {
        match self {
            Payload::GovPropose(_) => TxKind::GovPropose,
            Payload::GovApprove(_) => TxKind::GovApprove,
            Payload::CreateProgram(_) => TxKind::CreateProgram,
            Payload::Deposit(_) => TxKind::Deposit,
            Payload::SubmitApplication(_) => TxKind::SubmitApplication,
            Payload::ApproveApplication(_) => TxKind::ApproveApplication,
            Payload::RejectApplication(_) => TxKind::RejectApplication,
            Payload::CreatePlan(_) => TxKind::CreatePlan,
            Payload::Attest(_) => TxKind::Attest,
            Payload::RegisterHousehold(_) => TxKind::RegisterHousehold,
            Payload::UpdateHousehold(_) => TxKind::UpdateHousehold,
            Payload::SetEntitlement(_) => TxKind::SetEntitlement,
            Payload::Settle(_) => TxKind::Settle,
            Payload::CancelTranche(_) => TxKind::CancelTranche,
            Payload::ResolveAnomaly(_) => TxKind::ResolveAnomaly,
            Payload::CloseProgram(_) => TxKind::CloseProgram,
            Payload::ApprovePlan(_) => TxKind::ApprovePlan,
        }
    }

    /// The bytes that go in `TxBody::payload` (the inner struct only; the
    /// kind travels in the envelope).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Payload::GovPropose(p) => codec::encode(p),
            Payload::GovApprove(p) => codec::encode(p),
            Payload::CreateProgram(p) => codec::encode(p),
            Payload::Deposit(p) => codec::encode(p),
            Payload::SubmitApplication(p) => codec::encode(p),
            Payload::ApproveApplication(p) | Payload::RejectApplication(p) => codec::encode(p),
            Payload::CreatePlan(p) => codec::encode(p),
            Payload::Attest(p) => codec::encode(p),
            Payload::RegisterHousehold(p) => codec::encode(p),
            Payload::UpdateHousehold(p) => codec::encode(p),
            Payload::SetEntitlement(p) => codec::encode(p),
            Payload::Settle(p) => codec::encode(p),
            Payload::CancelTranche(p) => codec::encode(p),
            Payload::ResolveAnomaly(p) => codec::encode(p),
            Payload::CloseProgram(p) => codec::encode(p),
            Payload::ApprovePlan(p) => codec::encode(p),
        }
    }

    /// Strictly decodes the payload of a transaction of `kind`.
    pub fn decode(kind: TxKind, bytes: &[u8]) -> Result<Payload, ContractError> {
        let bad = |e: aidledger_types::CodecError| ContractError::BadPayload {
            kind,
            reason: e.to_string(),
        };
        Ok(match kind {
            TxKind::GovPropose => Payload::GovPropose(codec::decode(bytes).map_err(bad)?),
            TxKind::GovApprove => Payload::GovApprove(codec::decode(bytes).map_err(bad)?),
            TxKind::CreateProgram => Payload::CreateProgram(codec::decode(bytes).map_err(bad)?),
            TxKind::Deposit => Payload::Deposit(codec::decode(bytes).map_err(bad)?),
            TxKind::SubmitApplication => {
                Payload::SubmitApplication(codec::decode(bytes).map_err(bad)?)
            }
            TxKind::ApproveApplication => {
                Payload::ApproveApplication(codec::decode(bytes).map_err(bad)?)
            }
            TxKind::RejectApplication => {
                Payload::RejectApplication(codec::decode(bytes).map_err(bad)?)
            }
            TxKind::CreatePlan => Payload::CreatePlan(codec::decode(bytes).map_err(bad)?),
            TxKind::Attest => Payload::Attest(codec::decode(bytes).map_err(bad)?),
            TxKind::RegisterHousehold => {
                Payload::RegisterHousehold(codec::decode(bytes).map_err(bad)?)
            }
            TxKind::UpdateHousehold => Payload::UpdateHousehold(codec::decode(bytes).map_err(bad)?),
            TxKind::SetEntitlement => Payload::SetEntitlement(codec::decode(bytes).map_err(bad)?),
            TxKind::Settle => Payload::Settle(codec::decode(bytes).map_err(bad)?),
            TxKind::CancelTranche => Payload::CancelTranche(codec::decode(bytes).map_err(bad)?),
            TxKind::ResolveAnomaly => Payload::ResolveAnomaly(codec::decode(bytes).map_err(bad)?),
            TxKind::CloseProgram => Payload::CloseProgram(codec::decode(bytes).map_err(bad)?),
            TxKind::ApprovePlan => Payload::ApprovePlan(codec::decode(bytes).map_err(bad)?),
        })
    }
}
