//! Genesis: the consortium's starting state. It pins the chain id, the
//! starting time, the organisations and accounts, the validator set, the
//! contract modules and their versions, and the parameters.
//!
//! `genesis.json` is a file people read and sign off on, so the struct is
//! plain serde JSON; its hash is over the canonical binary encoding.

use aidledger_types::hash::{domain, hash_parts};
use aidledger_types::{
    codec, ChainId, Hash, OrgId, PublicKey, Role, Text, Timestamp, ValidatorSet,
};
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::model::{
    Account, DueReason, ModuleVersion, NextDue, NodeRecord, Org, OrgKind, Params, Status,
    ACTIVATION_DELAY_MAX_BLOCKS, ACTIVATION_DELAY_MIN_BLOCKS, IDLE_BLOCK_INTERVAL_MAX_MS,
    IDLE_BLOCK_INTERVAL_MIN_MS,
};
use crate::store::Overlay;
use crate::ContractError;

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GenesisOrg {
    pub id: OrgId,
    pub name: Text,
    pub kind: OrgKind,
    /// Keys of the nodes this organisation runs without being a validator
    /// (an audit office's observer, say). With the validators' keys they
    /// form the network allow-list: no other peer may connect.
    #[serde(default)]
    pub node_keys: Vec<PublicKey>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GenesisAccount {
    pub key: PublicKey,
    pub org: OrgId,
    pub roles: Vec<Role>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: ChainId,
    pub genesis_time: Timestamp,
    pub orgs: Vec<GenesisOrg>,
    pub accounts: Vec<GenesisAccount>,
    pub validators: ValidatorSet,
    pub modules: Vec<ModuleVersion>,
    pub params: Params,
}

fn bad(reason: impl Into<String>) -> ContractError {
    ContractError::Genesis {
        reason: reason.into(),
    }
}

impl Genesis {
    /// Every node key in the consortium, with its organisation: validators
    /// first, then observers. The network admits exactly these peers.
    pub fn network_keys(&self) -> Vec<(OrgId, PublicKey)> {
        let mut out: Vec<(OrgId, PublicKey)> = self
            .validators
            .validators()
            .iter()
            .map(|v| (v.org.clone(), v.key))
            .collect();
        for o in &self.orgs {
            for k in &o.node_keys {
                if !out.iter().any(|(_, have)| have == k) {
                    out.push((o.id.clone(), *k));
                }
            }
        }
        out
    }

    /// The genesis hash: the parent hash of block 1.
    pub fn hash(&self) -> Hash {
        hash_parts(domain::GENESIS, &[&codec::encode(self)])
    }

    /// Checks everything a node must refuse to start from.
    pub fn validate(&self) -> Result<(), ContractError> {
        let mut orgs: Vec<&OrgId> = self.orgs.iter().map(|o| &o.id).collect();
        orgs.sort();
        if let Some(w) = orgs.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("organisation {} is listed twice", w[0])));
        }
        if orgs.is_empty() {
            return Err(bad("no organisations"));
        }
        if orgs.len() > crate::gov::MAX_ORGS {
            return Err(bad(format!(
                "{} organisations; at most {} allowed",
                orgs.len(),
                crate::gov::MAX_ORGS
            )));
        }
        let mut keys: Vec<&PublicKey> = self.accounts.iter().map(|a| &a.key).collect();
        keys.sort();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("account key {} is listed twice", w[0])));
        }
        for a in &self.accounts {
            if orgs.binary_search(&&a.org).is_err() {
                return Err(bad(format!(
                    "account {} belongs to unknown organisation {}",
                    a.key, a.org
                )));
            }
            if a.roles.is_empty() {
                return Err(bad(format!("account {} has no roles", a.key)));
            }
        }
        // Deserialisation does not run ValidatorSet::new; run its checks.
        ValidatorSet::new(self.validators.validators().to_vec())
            .map_err(|e| bad(format!("validators: {e}")))?;
        for v in self.validators.validators() {
            if orgs.binary_search(&&v.org).is_err() {
                return Err(bad(format!(
                    "validator {} belongs to unknown organisation {}",
                    v.key, v.org
                )));
            }
        }
        // Node keys: few per organisation, and no key serves two nodes.
        let mut node_keys: Vec<&PublicKey> = self
            .validators
            .validators()
            .iter()
            .map(|v| &v.key)
            .collect();
        for o in &self.orgs {
            let validating = self
                .validators
                .validators()
                .iter()
                .filter(|v| v.org == o.id && !o.node_keys.contains(&v.key))
                .count();
            if o.node_keys.len() + validating > crate::gov::MAX_NODES_PER_ORG {
                return Err(bad(format!(
                    "organisation {} has more than {} node keys (validators included)",
                    o.id,
                    crate::gov::MAX_NODES_PER_ORG
                )));
            }
            for k in &o.node_keys {
                let is_own_validator = self
                    .validators
                    .validators()
                    .iter()
                    .any(|v| &v.key == k && v.org == o.id);
                if !is_own_validator {
                    node_keys.push(k);
                }
            }
        }
        node_keys.sort();
        if let Some(w) = node_keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("node key {} is listed twice", w[0])));
        }
        // Any versions this build carries, under exactly the fixed names:
        // a consortium may start on an older version than the newest.
        crate::Modules::resolve(&self.modules, 0).map_err(|e| {
            let why = match e {
                ContractError::UnsupportedModule {
                    name,
                    version,
                    carried,
                    ..
                } => format!("this build does not carry {name}@{version} (it carries {carried})"),
                other => other.to_string(),
            };
            bad(format!(
                "modules [{}]: {why}",
                crate::model::show_modules(&self.modules)
            ))
        })?;
        let p = &self.params;
        let mut admin_orgs: Vec<&OrgId> = self
            .accounts
            .iter()
            .filter(|a| a.roles.contains(&Role::Admin))
            .map(|a| &a.org)
            .collect();
        admin_orgs.sort();
        admin_orgs.dedup();
        if p.governance_threshold == 0 || p.governance_threshold as usize > admin_orgs.len() {
            return Err(bad(format!(
                "governance threshold {} must be 1 to the {} organisations with an admin account",
                p.governance_threshold,
                admin_orgs.len()
            )));
        }
        if p.block_time_drift_ms == 0
            || p.settlement_deadline_ms == 0
            || p.max_pending_tranches == 0
            || p.max_pending_tranches_per_program == 0
            || p.entitlement_batch == 0
            || p.plan_approvals == 0
        {
            return Err(bad("parameters must be greater than zero"));
        }
        if !(ACTIVATION_DELAY_MIN_BLOCKS..=ACTIVATION_DELAY_MAX_BLOCKS)
            .contains(&p.activation_delay_blocks)
        {
            return Err(bad(format!(
                "activation_delay_blocks {} must be {ACTIVATION_DELAY_MIN_BLOCKS} to {ACTIVATION_DELAY_MAX_BLOCKS}",
                p.activation_delay_blocks
            )));
        }
        if !(IDLE_BLOCK_INTERVAL_MIN_MS..=IDLE_BLOCK_INTERVAL_MAX_MS)
            .contains(&p.idle_block_interval_ms)
        {
            return Err(bad(format!(
                "idle_block_interval_ms {} must be {IDLE_BLOCK_INTERVAL_MIN_MS} to {IDLE_BLOCK_INTERVAL_MAX_MS} (1 s to 7 days)",
                p.idle_block_interval_ms
            )));
        }
        Ok(())
    }

    /// Writes the initial state into `store`, after validating.
    pub fn init(&self, store: &mut Overlay<'_>) -> Result<(), ContractError> {
        self.validate()?;
        let put = |store: &mut Overlay<'_>, k: Vec<u8>, v: Vec<u8>| store.put(k, v);
        put(
            store,
            keys::CHAIN_ID.to_vec(),
            codec::encode(&self.chain_id),
        );
        put(
            store,
            keys::GENESIS_HASH.to_vec(),
            codec::encode(&self.hash()),
        );
        put(store, keys::MODULES.to_vec(), codec::encode(&self.modules));
        put(store, keys::PARAMS.to_vec(), codec::encode(&self.params));
        // Block 1 is due at once: whatever the genesis set up starts there.
        put(
            store,
            keys::NEXT_DUE.to_vec(),
            codec::encode(&NextDue {
                at: self.genesis_time,
                reason: DueReason::Now,
            }),
        );
        put(
            store,
            keys::VALIDATORS.to_vec(),
            codec::encode(&self.validators),
        );
        // The node registry: the network allow-list, under the state root.
        for (org, key) in self.network_keys() {
            let record = NodeRecord {
                key,
                org,
                added_height: 0,
            };
            put(store, keys::node(&key), codec::encode(&record));
        }
        for o in &self.orgs {
            let org = Org {
                id: o.id.clone(),
                name: o.name.clone(),
                kind: o.kind,
                status: Status::Active,
            };
            put(store, keys::org(&o.id), codec::encode(&org));
        }
        for a in &self.accounts {
            let acct = Account {
                key: a.key,
                org: a.org.clone(),
                roles: crate::gov::normalise_roles(a.roles.clone())?,
                nonce: 0,
                status: Status::Active,
            };
            if acct.roles.contains(&Role::Admin) {
                put(store, keys::admin_index(&a.key), codec::encode(&acct.org));
            }
            put(store, keys::account(&a.key), codec::encode(&acct));
        }
        Ok(())
    }
}
