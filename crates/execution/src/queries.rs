//! Typed reads of committed state for the node, the mempool and the
//! simulator, so none of them needs to know the key layout.

use aidledger_contracts::{self as contracts, Account, ContractError, Overlay, Params};
use aidledger_types::{codec, TxBody, ValidatorSet};
use serde::{de::DeserializeOwned, Serialize};

use crate::exec::{Base, StateRead};
use crate::ExecError;

fn read<T: Serialize + DeserializeOwned>(
    state: &dyn StateRead,
    key: &[u8],
    what: &str,
) -> Result<T, ExecError> {
    let bytes = state.get(key)?.ok_or_else(|| ExecError::Storage {
        reason: format!("{what} missing from state"),
    })?;
    codec::decode(&bytes).map_err(|e| ExecError::Storage {
        reason: format!("{what} does not decode: {e}"),
    })
}

/// The consortium parameters in force (for example the block-time drift to
/// pass to `validate_block`).
pub fn read_params(state: &dyn StateRead) -> Result<Params, ExecError> {
    read(state, contracts::keys::PARAMS, "parameters")
}

/// When the next block is due with no transaction (ADR 017, a quiet
/// chain): written by the genesis and at the end of every block.
pub fn read_next_due(state: &dyn StateRead) -> Result<contracts::NextDue, ExecError> {
    read(state, contracts::keys::NEXT_DUE, "next due time")
}

/// The contract module versions in force (ADR 017, contract upgrades).
pub fn read_modules(state: &dyn StateRead) -> Result<Vec<contracts::ModuleVersion>, ExecError> {
    read(state, contracts::keys::MODULES, "module versions")
}

/// The contract upgrade governance scheduled, if any.
pub fn read_scheduled_upgrade(
    state: &dyn StateRead,
) -> Result<Option<contracts::ScheduledUpgrade>, ExecError> {
    read_opt(
        state,
        contracts::keys::UPGRADE_SCHEDULED,
        "scheduled upgrade",
    )
}

/// The validator set that certifies the next block.
pub fn read_validator_set(state: &dyn StateRead) -> Result<ValidatorSet, ExecError> {
    read(state, contracts::keys::VALIDATORS, "validator set")
}

/// The node registry (ADR 017): every node key the consortium admits to
/// its network, in key order.
pub fn read_nodes(state: &dyn StateRead) -> Result<Vec<contracts::NodeRecord>, ExecError> {
    let pairs = state.scan(
        contracts::keys::NODE_PREFIX,
        None,
        contracts::gov::MAX_NODES + 1,
    )?;
    pairs
        .iter()
        .map(|(_, v)| {
            codec::decode(v).map_err(|e| ExecError::Storage {
                reason: format!("a node record does not decode: {e}"),
            })
        })
        .collect()
}

/// A record that may be absent.
fn read_opt<T: Serialize + DeserializeOwned>(
    state: &dyn StateRead,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, ExecError> {
    state
        .get(key)?
        .map(|bytes| {
            codec::decode(&bytes).map_err(|e| ExecError::Storage {
                reason: format!("{what} does not decode: {e}"),
            })
        })
        .transpose()
}

/// The replacement pending for a node key, if governance scheduled one.
pub fn read_node_replacement(
    state: &dyn StateRead,
    key: &aidledger_types::PublicKey,
) -> Result<Option<contracts::NodeReplacement>, ExecError> {
    let what = format!("the replacement record of node key {key}");
    read_opt(state, &contracts::keys::node_replacing(key), &what)
}

/// Why a node key is no longer registered, if governance removed it.
pub fn read_retired_node(
    state: &dyn StateRead,
    key: &aidledger_types::PublicKey,
) -> Result<Option<contracts::RetiredNode>, ExecError> {
    let what = format!("the retired node record of {key}");
    read_opt(state, &contracts::keys::retired_node(key), &what)
}

/// The admission check a mempool runs before queueing a transaction: the
/// same envelope rules execution applies (chain id, known active account and
/// organisation, role). The account is returned so the caller can compare
/// nonces (a mempool may hold future nonces; execution will not apply
/// them out of order). A refusal is `ExecError::Refused` with the same
/// reason a receipt would carry.
pub fn admission(state: &dyn StateRead, body: &TxBody) -> Result<Account, ExecError> {
    let base = Base::new(state);
    let mut overlay = Overlay::new(&base);
    contracts::check_envelope(&mut overlay, body).map_err(|e| match e {
        ContractError::Storage { reason } => ExecError::Storage { reason },
        other => ExecError::Refused(other),
    })
}

/// Where one tranche of a plan stands: whether its condition holds and
/// which of its leaves do (see [`contracts::condition::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrancheCheck {
    pub id: aidledger_types::Slug,
    /// The whole condition in the condition language.
    pub condition: String,
    pub holds: bool,
    pub leaves: Vec<contracts::condition::LeafState>,
}

/// The condition of each tranche of `plan` that still waits (pending),
/// evaluated as the contracts would at `time` (the last block's) over
/// committed state: what a reader is told about a tranche that waits.
/// Released and cancelled tranches are not evaluated. Reads only; the
/// plan's application, if it has one, is read from state for its
/// approvals.
pub fn read_tranche_checks(
    state: &dyn StateRead,
    height: u64,
    time: aidledger_types::Timestamp,
    plan: &contracts::Plan,
) -> Result<Vec<TrancheCheck>, ExecError> {
    let application: Option<contracts::Application> = match &plan.application {
        Some(a) => read_opt(
            state,
            &contracts::keys::application(a),
            "the plan's application",
        )?,
        None => None,
    };
    let env = contracts::condition::EvalEnv {
        plan,
        application: application.as_ref(),
    };
    let base = Base::new(state);
    plan.tranches
        .iter()
        .filter(|t| matches!(t.status, contracts::TrancheStatus::Pending { .. }))
        .map(|t| {
            let (holds, leaves) =
                contracts::condition::explain(&t.condition, &base, height, time, &env).map_err(
                    |e| match e {
                        ContractError::Storage { reason } => ExecError::Storage { reason },
                        other => ExecError::Refused(other),
                    },
                )?;
            Ok(TrancheCheck {
                id: t.id.clone(),
                condition: contracts::condition_text::print(&t.condition),
                holds,
                leaves,
            })
        })
        .collect()
}
