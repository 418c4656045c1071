//! The context a module works in: the overlay it writes to, the block's
//! height and time, the signer (for transactions), the events it emits, and
//! a step meter that bounds work which depends on input.

use aidledger_types::{codec, Hash, OrgId, PublicKey, Role, Timestamp};
use serde::{de::DeserializeOwned, Serialize};

use crate::events::{Event, EventBody};
use crate::store::{Overlay, StoreRead};
use crate::ContractError;

/// Steps one transaction may use. A step is one state read, write or
/// scanned entry, or one condition node evaluated.
pub const TX_STEP_LIMIT: u64 = 200_000;

/// The account that signed the transaction being applied.
#[derive(Clone, Debug)]
pub struct Signer {
    pub key: PublicKey,
    pub org: OrgId,
    pub roles: Vec<Role>,
}

pub struct Ctx<'s, 'b> {
    pub(crate) store: &'s mut Overlay<'b>,
    pub height: u64,
    pub time: Timestamp,
    pub tx: Option<(Hash, Signer)>,
    pub(crate) events: Vec<Event>,
    steps_used: u64,
    step_limit: u64,
}

fn hex_key(key: &[u8]) -> String {
    // Keys are mostly ASCII; show them readably in errors.
    key.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

impl<'s, 'b> Ctx<'s, 'b> {
    pub fn new(
        store: &'s mut Overlay<'b>,
        height: u64,
        time: Timestamp,
        tx: Option<(Hash, Signer)>,
        step_limit: u64,
    ) -> Self {
        Ctx {
            store,
            height,
            time,
            tx,
            events: Vec::new(),
            steps_used: 0,
            step_limit,
        }
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn tx_id(&self) -> Option<Hash> {
        self.tx.as_ref().map(|(h, _)| *h)
    }

    /// The signer of the current transaction. Only called from transaction
    /// handlers, where it is always set.
    pub fn signer(&self) -> Result<&Signer, ContractError> {
        self.tx
            .as_ref()
            .map(|(_, s)| s)
            .ok_or_else(|| ContractError::Invariant {
                what: "transaction handler called without a signer".into(),
            })
    }

    pub fn charge(&mut self, steps: u64, what: &'static str) -> Result<(), ContractError> {
        self.steps_used = self.steps_used.saturating_add(steps);
        if self.steps_used > self.step_limit {
            return Err(ContractError::OutOfSteps {
                what,
                limit: self.step_limit,
            });
        }
        Ok(())
    }

    pub fn emit(&mut self, body: EventBody) {
        let ev = Event {
            height: self.height,
            tx: self.tx_id(),
            body,
        };
        self.events.push(ev);
    }

    pub fn get<T: Serialize + DeserializeOwned>(
        &mut self,
        key: &[u8],
    ) -> Result<Option<T>, ContractError> {
        self.charge(1, "state reads")?;
        match self.store.get(key)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| ContractError::Corrupt {
                    key: hex_key(key),
                    reason: e.to_string(),
                }),
        }
    }

    pub fn exists(&mut self, key: &[u8]) -> Result<bool, ContractError> {
        self.charge(1, "state reads")?;
        Ok(self.store.get(key)?.is_some())
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), ContractError> {
        self.charge(1, "state writes")?;
        self.store.put(key, codec::encode(value));
        Ok(())
    }

    pub fn delete(&mut self, key: Vec<u8>) -> Result<(), ContractError> {
        self.charge(1, "state writes")?;
        self.store.delete(key);
        Ok(())
    }

    /// Raw scan; each returned entry costs a step.
    pub fn scan(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<crate::store::Entries, ContractError> {
        self.charge(1, "state scans")?;
        let out = self.store.scan(prefix, start_after, limit)?;
        self.charge(out.len() as u64, "state scans")?;
        Ok(out)
    }

    /// Scan with decoded values.
    pub fn scan_t<T: Serialize + DeserializeOwned>(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, ContractError> {
        self.scan(prefix, start_after, limit)?
            .into_iter()
            .map(|(k, v)| {
                let t = codec::decode(&v).map_err(|e| ContractError::Corrupt {
                    key: hex_key(&k),
                    reason: e.to_string(),
                })?;
                Ok((k, t))
            })
            .collect()
    }

    /// A u64 counter that starts at 0; returns the current value and
    /// stores the next.
    pub fn next_seq(&mut self, key: &[u8]) -> Result<u64, ContractError> {
        let cur: u64 = self.get(key)?.unwrap_or(0);
        let next = cur
            .checked_add(1)
            .ok_or(ContractError::Overflow { what: "sequence" })?;
        self.put(key.to_vec(), &next)?;
        Ok(cur)
    }
}
