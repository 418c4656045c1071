//! TEST FIXTURES ONLY. Deterministic development consortia and a signer of
//! valid workload transactions, for the simulator, node tests and these
//! crates' tests. The keys here come from public seeds: anyone can sign
//! with them. Never use them for a real consortium.

use std::collections::BTreeMap;

use aidledger_contracts::model::{
    ApprovalPolicy, AttestValue, Eligibility, OrgKind, Params, Recipient, Subject,
};
use aidledger_contracts::payload::{self, Payload, TrancheSpec};
use aidledger_contracts::{Condition, Genesis, GenesisAccount, GenesisOrg};
use aidledger_crypto::{verify_tx, Keypair, Purpose, VerifiedTx};
use aidledger_types::hash::sha256;
use aidledger_types::{
    codec, Amount, Block, ChainId, CommitCertificate, CommitSignature, Currency, Hash, OrgId,
    PublicKey, RegionCode, Role, SignedTx, Slug, Text, Timestamp, TxBody, Validator, ValidatorSet,
};

use crate::exec::StateRead;
use crate::ExecError;

/// The chain id of development consortia.
pub const DEV_CHAIN_ID: &str = "aidledger-dev";
/// 2026-01-01T00:00:00Z.
pub const DEV_GENESIS_TIME: Timestamp = Timestamp(1_767_225_600_000);
/// The region every development program covers.
pub const DEV_REGION: &str = "gansu";

fn seed_for(seed: u64, label: &str) -> [u8; 32] {
    sha256(format!("aidledger test fixture seed {seed} {label}").as_bytes()).0
}

/// Builds a slug from a literal fixture name; the fixtures only use valid
/// names, so a failure is a bug in this file.
fn slug(s: &str) -> Slug {
    Slug::new(s).unwrap_or_else(|e| panic!("testkit slug {s:?}: {e}"))
}
fn org(s: &str) -> OrgId {
    OrgId::new(s).unwrap_or_else(|e| panic!("testkit org {s:?}: {e}"))
}
fn text(s: &str) -> Text {
    Text::new(s).unwrap_or_else(|e| panic!("testkit text {s:?}: {e}"))
}
fn region(s: &str) -> RegionCode {
    RegionCode::new(s).unwrap_or_else(|e| panic!("testkit region {s:?}: {e}"))
}

/// The keys of a development consortium.
#[derive(Clone, Debug)]
pub struct DevKeys {
    /// Validator consensus keys, in validator-set order.
    pub validators: Vec<(OrgId, Keypair)>,
    /// One operator key per (organisation, role).
    pub operators: BTreeMap<(OrgId, Role), Keypair>,
}

impl DevKeys {
    /// A commit certificate for `block` signed by the first quorum of
    /// `set`'s members whose keys this fixture holds, each voting at
    /// `time`. Panics when it holds too few, a bug in the calling test.
    pub fn certify(
        &self,
        chain_id: &ChainId,
        set: &ValidatorSet,
        block: &Block,
        time: Timestamp,
    ) -> CommitCertificate {
        let mut cert = CommitCertificate {
            height: block.header.height,
            view: block.header.view,
            block_hash: block.hash(),
            signatures: Vec::new(),
        };
        let vote = codec::encode(&cert.vote(chain_id, time));
        for (index, v) in set.validators().iter().enumerate() {
            if cert.signatures.len() == set.quorum() {
                break;
            }
            if let Some((_, kp)) = self.validators.iter().find(|(_, k)| k.public() == v.key) {
                cert.signatures.push(CommitSignature {
                    validator: index as u16,
                    time,
                    signature: kp.sign(chain_id, Purpose::Commit, &vote),
                });
            }
        }
        assert_eq!(
            cert.signatures.len(),
            set.quorum(),
            "the fixture holds too few of the set's keys to certify"
        );
        cert
    }

    /// The operator key of `org` with `role`. Panics if the fixture has no
    /// such operator, which is a bug in the calling test.
    pub fn op(&self, org_id: &str, role: Role) -> &Keypair {
        self.operators
            .get(&(org(org_id), role))
            .unwrap_or_else(|| panic!("dev consortium has no {role} at {org_id}"))
    }
}

/// The roles each development organisation's operators hold.
fn dev_roles(org_id: &str) -> &'static [Role] {
    use Role::*;
    match org_id {
        "state-bank" => &[Admin, Disburser, Approver, ProgramOfficer],
        "dev-bank" => &[Admin, Disburser, Approver, ProgramOfficer],
        "poverty-office" => &[Admin, ProgramOfficer, Approver, Registrar, Attester],
        "finance-bureau" => &[Admin, Approver, Attester, Disburser, ProgramOfficer],
        "audit-office" => &[Admin, Auditor, Attester],
        "county-unit" => &[ProgramOfficer, Registrar, Attester],
        _ => &[Admin, Approver],
    }
}

/// A development consortium of `n_validators` (at least 1) validating
/// organisations: state-bank, dev-bank, poverty-office, finance-bureau,
/// then member-5, member-6, ... Non-validating audit-office and
/// county-unit always exist, as do the first four organisations. Each
/// organisation has one operator account per role it uses.
pub fn dev_genesis(n_validators: usize, seed: u64) -> (Genesis, DevKeys) {
    let n = n_validators.max(1);
    let mut orgs: Vec<(String, OrgKind, &str)> = vec![
        ("state-bank".into(), OrgKind::Bank, "State Bank"),
        (
            "dev-bank".into(),
            OrgKind::DevelopmentBank,
            "Agricultural Development Bank",
        ),
        (
            "poverty-office".into(),
            OrgKind::PovertyOffice,
            "Poverty Alleviation Office",
        ),
        (
            "finance-bureau".into(),
            OrgKind::FinanceBureau,
            "Finance Bureau",
        ),
    ];
    for i in 5..=n {
        orgs.push((format!("member-{i}"), OrgKind::Bank, "Member Bank"));
    }
    let validating: Vec<String> = orgs.iter().take(n).map(|(o, _, _)| o.clone()).collect();
    orgs.push(("audit-office".into(), OrgKind::Auditor, "Audit Office"));
    orgs.push((
        "county-unit".into(),
        OrgKind::ImplementingUnit,
        "County Implementation Unit",
    ));

    let mut keys = DevKeys {
        validators: Vec::new(),
        operators: BTreeMap::new(),
    };
    let mut accounts = Vec::new();
    for (o, _, _) in &orgs {
        for role in dev_roles(o) {
            let kp = Keypair::from_seed(seed_for(seed, &format!("operator {o} {role}")));
            accounts.push(GenesisAccount {
                key: kp.public(),
                org: org(o),
                roles: vec![*role],
            });
            keys.operators.insert((org(o), *role), kp);
        }
    }
    let mut validators = Vec::new();
    for o in &validating {
        let kp = Keypair::from_seed(seed_for(seed, &format!("validator {o}")));
        validators.push(Validator {
            org: org(o),
            key: kp.public(),
        });
        keys.validators.push((org(o), kp));
    }
    let validators =
        ValidatorSet::new(validators).unwrap_or_else(|e| panic!("dev validator set: {e}"));
    let genesis = Genesis {
        chain_id: ChainId::new(DEV_CHAIN_ID).unwrap_or_else(|e| panic!("{e}")),
        genesis_time: DEV_GENESIS_TIME,
        orgs: orgs
            .iter()
            .map(|(o, kind, name)| GenesisOrg {
                id: org(o),
                name: text(name),
                kind: *kind,
                node_keys: vec![],
            })
            .collect(),
        accounts,
        validators,
        modules: aidledger_contracts::module_versions(),
        // The shortest activation delay: a validator-set change proposed
        // and approved takes effect two blocks after the approval.
        params: Params {
            activation_delay_blocks: aidledger_contracts::model::ACTIVATION_DELAY_MIN_BLOCKS,
            ..Params::default()
        },
    };
    (genesis, keys)
}

/// Signs transactions for a development consortium, tracking nonces.
pub struct TxFactory {
    pub chain_id: ChainId,
    pub keys: DevKeys,
    nonces: BTreeMap<PublicKey, u64>,
    households: u64,
}

impl TxFactory {
    pub fn new(genesis: &Genesis, keys: DevKeys) -> Self {
        TxFactory {
            chain_id: genesis.chain_id.clone(),
            keys,
            nonces: BTreeMap::new(),
            households: 0,
        }
    }

    /// The nonce the factory will use next for `key`.
    pub fn next_nonce(&self, key: &PublicKey) -> u64 {
        self.nonces.get(key).copied().unwrap_or(0)
    }

    /// Re-reads every operator's nonce from state; call after a block in
    /// which some of the factory's transactions were refused or dropped.
    pub fn resync(&mut self, state: &dyn StateRead) -> Result<(), ExecError> {
        for kp in self.keys.operators.values() {
            let k = kp.public();
            if let Some(bytes) = state.get(&aidledger_contracts::keys::account(&k))? {
                let a: aidledger_contracts::Account =
                    codec::decode(&bytes).map_err(|e| ExecError::Storage {
                        reason: format!("account {k}: {e}"),
                    })?;
                self.nonces.insert(k, a.nonce);
            }
        }
        Ok(())
    }

    /// Signs `payload` with an explicit nonce, leaving the tracked nonce
    /// alone (for tests of wrong nonces).
    pub fn sign_with_nonce(&self, key: &Keypair, payload: &Payload, nonce: u64) -> SignedTx {
        let body = TxBody {
            chain_id: self.chain_id.clone(),
            nonce,
            signer: key.public(),
            kind: payload.kind(),
            payload: payload.encode(),
        };
        let signature = key.sign(&self.chain_id, Purpose::Tx, body.id().as_bytes());
        SignedTx { body, signature }
    }

    /// Signs `payload` with the key's next nonce and advances it.
    pub fn sign(&mut self, key: &Keypair, payload: &Payload) -> SignedTx {
        let pk = key.public();
        let n = self.next_nonce(&pk);
        self.nonces.insert(pk, n + 1);
        self.sign_with_nonce(key, payload, n)
    }

    /// Signs as the operator `org` / `role`.
    pub fn sign_as(&mut self, org_id: &str, role: Role, payload: &Payload) -> SignedTx {
        let kp = self.keys.op(org_id, role).clone();
        self.sign(&kp, payload)
    }

    /// Verifies a factory transaction (which is always correctly signed).
    pub fn verified(&self, tx: SignedTx) -> VerifiedTx {
        verify_tx(tx, &self.chain_id)
            .unwrap_or_else(|e| panic!("testkit signed an invalid tx: {e}"))
    }

    /// A program managed by poverty-office, funded by state-bank and
    /// dev-bank, approved by 2 of poverty-office, dev-bank, finance-bureau,
    /// covering `gansu`, in CNY.
    pub fn create_program(&mut self, id: &str, ceiling: u64) -> SignedTx {
        let p = Payload::CreateProgram(payload::CreateProgram {
            id: slug(id),
            title: text("Targeted poverty relief"),
            currency: Currency::new("CNY").unwrap_or_else(|e| panic!("{e}")),
            decimals: 2,
            funding_orgs: vec![org("state-bank"), org("dev-bank")],
            budget_ceiling: Amount(ceiling),
            policy: ApprovalPolicy {
                threshold: 2,
                orgs: vec![
                    org("dev-bank"),
                    org("finance-bureau"),
                    org("poverty-office"),
                ],
            },
            region_scope: region(DEV_REGION),
        });
        self.sign_as("poverty-office", Role::ProgramOfficer, &p)
    }

    /// A deposit by state-bank's disburser.
    pub fn deposit(&mut self, program: &str, amount: u64) -> SignedTx {
        let p = Payload::Deposit(payload::Deposit {
            program: slug(program),
            amount: Amount(amount),
        });
        self.sign_as("state-bank", Role::Disburser, &p)
    }

    /// The salted-hash id of the development household number `n`.
    pub fn household_id(n: u64) -> Hash {
        sha256(format!("aidledger test household {n}").as_bytes())
    }

    /// Registers the next development household, in one of three villages.
    pub fn register_household(&mut self) -> (Hash, SignedTx) {
        let n = self.households;
        self.households += 1;
        let id = Self::household_id(n);
        let p = Payload::RegisterHousehold(payload::RegisterHousehold {
            id,
            region: region(&format!("{DEV_REGION}/dingxi/village-{}", n % 3)),
        });
        (id, self.sign_as("poverty-office", Role::Registrar, &p))
    }

    /// An attestation by `org`'s attester of `claim = code` about `subject`.
    pub fn attest(&mut self, org_id: &str, subject: Subject, claim: &str, code: &str) -> SignedTx {
        let p = Payload::Attest(payload::Attest {
            subject,
            claim: slug(claim),
            value: AttestValue::Code(slug(code)),
        });
        self.sign_as(org_id, Role::Attester, &p)
    }

    /// A monthly-style entitlement for every household in `gansu`.
    pub fn set_entitlement(
        &mut self,
        id: &str,
        program: &str,
        amount: u64,
        start: Timestamp,
        period_ms: u64,
        periods: u32,
    ) -> SignedTx {
        let p = Payload::SetEntitlement(payload::SetEntitlement {
            id: slug(id),
            program: slug(program),
            amount: Amount(amount),
            period_ms,
            start,
            periods,
            eligibility: Eligibility::Region(region(DEV_REGION)),
        });
        self.sign_as("poverty-office", Role::ProgramOfficer, &p)
    }

    /// A plan with one tranche per (id, amount, condition) to county-unit.
    pub fn create_plan(
        &mut self,
        id: &str,
        program: &str,
        application: Option<&str>,
        tranches: &[(&str, u64, Condition)],
    ) -> SignedTx {
        let p = Payload::CreatePlan(payload::CreatePlan {
            id: slug(id),
            program: slug(program),
            application: application.map(slug),
            tranches: tranches
                .iter()
                .map(|(t, amount, c)| TrancheSpec {
                    id: slug(t),
                    amount: Amount(*amount),
                    recipient: Recipient::Org(org("county-unit")),
                    condition: c.clone(),
                })
                .collect(),
        });
        self.sign_as("poverty-office", Role::ProgramOfficer, &p)
    }

    /// An approval of plan `id` by `org_id`'s approver (a plan without an
    /// application needs one, from a person other than its creator).
    pub fn approve_plan(&mut self, org_id: &str, id: &str) -> SignedTx {
        let p = Payload::ApprovePlan(payload::ApprovePlan { plan: slug(id) });
        self.sign_as(org_id, Role::Approver, &p)
    }

    /// The transactions of block `i` of a steady, always-valid workload:
    /// block 0 creates program `relief` with a deposit and an entitlement
    /// starting a day after genesis; every block registers two households,
    /// attests one of them and deposits a little more.
    pub fn workload_block(&mut self, i: u64) -> Vec<SignedTx> {
        let mut txs = Vec::new();
        if i == 0 {
            txs.push(self.create_program("relief", 1_000_000_000_000));
            txs.push(self.deposit("relief", 100_000_000));
            txs.push(self.set_entitlement(
                "relief-monthly",
                "relief",
                10_000,
                DEV_GENESIS_TIME.saturating_add_ms(aidledger_types::time::MS_PER_DAY),
                aidledger_types::time::MS_PER_DAY,
                12,
            ));
        }
        let (h, tx) = self.register_household();
        txs.push(tx);
        let (_, tx) = self.register_household();
        txs.push(tx);
        txs.push(self.attest(
            "poverty-office",
            Subject::Household(h),
            "income-verified",
            "below-line",
        ));
        txs.push(self.deposit("relief", 1_000));
        txs
    }
}
