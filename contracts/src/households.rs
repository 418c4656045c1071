//! Household files: a salted-hash id computed off-chain, a region code and
//! a status. No personal data ever goes on chain.
//!
//! Registering an id that already exists is a cross-check failure, not a
//! mistake to hide: the transaction is applied, the existing file is left
//! untouched, and a `duplicate-household` anomaly is raised against the
//! household, which holds its payments until someone resolves it.
//!
//! Owns `hh/` and `hh-region/`.

use aidledger_types::authz::Relation;
use aidledger_types::{Hash, RegionCode, TxKind};

use crate::ctx::Ctx;
use crate::events::EventBody;
use crate::keys;
use crate::model::{AnomalyKind, Household, HouseholdStatus, Subject};
use crate::payload::Payload;
use crate::{access, anomalies, ContractError, Module};

pub struct Households;

pub fn get(ctx: &mut Ctx<'_, '_>, id: &Hash) -> Result<Option<Household>, ContractError> {
    ctx.get(&keys::household(id))
}

/// Why the household cannot be paid from a program with this region scope
/// (and, if given, only within `region`), or `None` if it can: the one
/// eligibility rule of plans and entitlements.
pub fn ineligibility(
    ctx: &mut Ctx<'_, '_>,
    id: &Hash,
    scope: &RegionCode,
    region: Option<&RegionCode>,
) -> Result<Option<String>, ContractError> {
    Ok(match get(ctx, id)? {
        None => Some("household is not registered".to_string()),
        Some(hh) if hh.status != HouseholdStatus::Active => {
            Some("household is inactive".to_string())
        }
        Some(hh) if !scope.covers(&hh.region) => Some(format!(
            "household region {} is outside the program scope {scope}",
            hh.region
        )),
        Some(hh) => match region {
            Some(r) if !r.covers(&hh.region) => Some(format!(
                "household region {} is outside the entitlement's region {r}",
                hh.region
            )),
            _ => None,
        },
    })
}

impl Module for Households {
    fn name(&self) -> &'static str {
        "households"
    }
    fn version(&self) -> u32 {
        1
    }
    fn prefixes(&self) -> &'static [&'static [u8]] {
        &[keys::HOUSEHOLD_PREFIX, keys::HOUSEHOLD_REGION_PREFIX]
    }
    fn kinds(&self) -> &'static [TxKind] {
        &[TxKind::RegisterHousehold, TxKind::UpdateHousehold]
    }

    fn apply(&self, ctx: &mut Ctx<'_, '_>, payload: &Payload) -> Result<(), ContractError> {
        let signer = ctx.signer()?.clone();
        match payload {
            Payload::RegisterHousehold(r) => {
                access::require(ctx, TxKind::RegisterHousehold, &[])?;
                if r.id == Hash::ZERO {
                    return Err(ContractError::invalid(
                        "household id",
                        "the zero hash is not a salted id",
                    ));
                }
                if let Some(existing) = get(ctx, &r.id)? {
                    anomalies::raise(
                        ctx,
                        Subject::Household(r.id),
                        AnomalyKind::DuplicateHousehold {
                            first_by: existing.registered_by,
                            second_by: signer.org,
                        },
                    )?;
                    return Ok(());
                }
                let h = Household {
                    id: r.id,
                    region: r.region.clone(),
                    status: HouseholdStatus::Active,
                    registered_by: signer.org,
                    registered_height: ctx.height,
                    updated_height: ctx.height,
                };
                ctx.put(keys::household(&h.id), &h)?;
                ctx.put(keys::household_region(&h.region, &h.id), &())?;
                ctx.emit(EventBody::HouseholdRegistered { household: h.id });
                Ok(())
            }
            Payload::UpdateHousehold(u) => {
                let mut h =
                    get(ctx, &u.id)?.ok_or_else(|| ContractError::not_found("household", u.id))?;
                // Only the organisation that registered the household.
                let rels: &[Relation] = if h.registered_by == signer.org {
                    &[Relation::Beneficiary]
                } else {
                    &[]
                };
                access::require(ctx, TxKind::UpdateHousehold, rels)?;
                if h.region == u.region && h.status == u.status {
                    return Err(ContractError::invalid("update", "nothing changes"));
                }
                if h.region != u.region {
                    ctx.delete(keys::household_region(&h.region, &h.id))?;
                    ctx.put(keys::household_region(&u.region, &h.id), &())?;
                    h.region = u.region.clone();
                }
                h.status = u.status;
                h.updated_height = ctx.height;
                ctx.put(keys::household(&h.id), &h)?;
                ctx.emit(EventBody::HouseholdUpdated { household: h.id });
                Ok(())
            }
            _ => Err(ContractError::Invariant {
                what: "households got a foreign payload".into(),
            }),
        }
    }
}
