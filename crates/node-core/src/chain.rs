//! The core's view of committed chain state through the store.

use std::sync::Arc;

use aidledger_contracts::{keys, Account, Genesis, PreviousValidators};
use aidledger_execution::{ParentInfo, StateRead};
use aidledger_mempool::{AccountInfo, AccountView};
use aidledger_storage::Store;
use aidledger_types::{codec, PublicKey, StateAccumulator};

/// Execution's read access to committed state, through the store (one
/// adapter for the node, the simulator and the auditor).
pub use aidledger_audit::{StoreState, StoreView};
/// The mempool's read access to committed accounts.
pub struct StoreAccounts(pub Arc<dyn Store>);

impl AccountView for StoreAccounts {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        account_info(&self.0.state_get(&keys::account(key)).ok()??)
    }
}

/// The mempool's read access to accounts in any state: a block's
/// post-state, before it commits, when the next block is built on it
/// (pipelining, ADR 022).
pub struct StateAccounts<'a>(pub &'a dyn StateRead);

impl AccountView for StateAccounts<'_> {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        account_info(&self.0.get(&keys::account(key)).ok()??)
    }
}

fn account_info(bytes: &[u8]) -> Option<AccountInfo> {
    let a: Account = codec::decode(bytes).ok()?;
    Some(AccountInfo {
        roles: a.roles,
        next_nonce: a.nonce,
        active: a.status == aidledger_contracts::Status::Active,
    })
}

/// Opens the chain: writes genesis into an empty store, or checks that the
/// store holds this genesis. Returns the parent of the next block and the
/// current accumulator.
pub fn open_chain(
    store: &dyn Store,
    genesis: &Genesis,
) -> anyhow::Result<(ParentInfo, StateAccumulator)> {
    use anyhow::{bail, Context};
    let ghash = genesis.hash();
    match store.genesis()? {
        Some((h, _)) if h != ghash => bail!(
            "the data directory holds chain {} but genesis.json is {}; refusing to mix chains",
            h,
            ghash
        ),
        Some(_) => {}
        None => {
            let (state, acc) =
                aidledger_execution::genesis_state(genesis).context("building genesis state")?;
            store.put_genesis(ghash, codec::encode(genesis), state, acc)?;
        }
    }
    let acc = store.accumulator()?;
    let Some(head) = store.head()? else {
        return Ok((ParentInfo::genesis(genesis)?, acc));
    };
    let block = store
        .block(head.height)?
        .with_context(|| format!("head block {} is missing", head.height))?;
    if acc.root() != head.state_root {
        bail!(
            "stored accumulator root {} differs from the head's state root {}",
            acc.root(),
            head.state_root
        );
    }
    let state = StoreState(store);
    let validators = aidledger_execution::read_validator_set(&state)?;
    // The set that certified the head: the current one, unless the head
    // block changed the set; then the one recorded before that change.
    let certifiers = if validators.hash() == block.header.validator_set_hash {
        validators.clone()
    } else {
        let prev = state
            .get(keys::PREVIOUS_VALIDATORS)?
            .map(|b| codec::decode::<PreviousValidators>(&b))
            .transpose()
            .context("decoding the previous validator set")?;
        match prev {
            Some(p)
                if p.height == head.height
                    && p.validators.hash() == block.header.validator_set_hash =>
            {
                p.validators
            }
            _ => bail!(
                "head block {} changed the validator set, and the state does not hold the set \
                 that certified it",
                head.height
            ),
        }
    };
    let certificate = store
        .certificate(head.height)?
        .with_context(|| format!("the certificate of head block {} is missing", head.height))?;
    Ok((
        ParentInfo {
            chain_id: genesis.chain_id.clone(),
            height: head.height,
            hash: head.block_hash,
            grand_hash: block.header.parent_hash,
            timestamp: block.header.timestamp,
            validator_set: validators,
            state_root: head.state_root,
            certifiers,
            certificate: Some(certificate),
        },
        acc,
    ))
}

/// Which of a node's keys signs and which is its network identity, as the
/// committed node registry says (ADR 017: a node-key replacement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyChoice {
    /// The registry retired the signing key with the staged key as its
    /// successor: the staged key signs from now on.
    pub promote: bool,
    /// The key the network identity (peer id) derives from.
    pub network: PublicKey,
}

/// `key` is the node's signing key, `next` the staged one
/// (`keys/node-next.json`), if any. The staged key becomes the network
/// identity as soon as governance registers it as `key`'s replacement:
/// every member admits it from that block, so the node keeps its links
/// when `key` is retired at the replacement's height, whichever of them
/// commits that block first. It becomes the signing key once `key` is
/// retired with it as the successor. A staged key that is no replacement
/// of `key` changes nothing.
pub fn choose_keys(
    state: &dyn StateRead,
    key: &PublicKey,
    next: Option<&PublicKey>,
) -> anyhow::Result<KeyChoice> {
    let mut choice = KeyChoice {
        promote: false,
        network: *key,
    };
    let Some(next) = next else {
        return Ok(choice);
    };
    let err = |e: aidledger_execution::ExecError| anyhow::anyhow!("reading the node registry: {e}");
    let retired = aidledger_execution::read_retired_node(state, key).map_err(err)?;
    if retired.is_some_and(|r| r.successor.as_ref() == Some(next)) {
        choice.promote = true;
        choice.network = *next;
    } else if aidledger_execution::read_node_replacement(state, key)
        .map_err(err)?
        .is_some_and(|r| r.new == *next)
    {
        choice.network = *next;
    }
    Ok(choice)
}
