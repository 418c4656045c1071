#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1 (issue 16,
//! part 1): the validator set grows from four to five and shrinks back to
//! four by governance, each change at the height the proposal states,
//! under load and with no restart. The fifth validator, the audit
//! office's observer (a registered node), votes from that height: with one
//! of the first four stopped, the chain goes on only because it does.

mod common;

use common::consortium::{height, pid_of, signal, status, wait_exit, wait_until, Org, Testnet};
use common::{ok, s};
use serde_json::Value;

/// Blocks between the proposal and the height it names: the test genesis'
/// activation delay (20) plus room for the approval.
const AHEAD: u64 = 40;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn header(api: &str, h: u64) -> Value {
    common::consortium::block_json(api, h).unwrap()["header"].clone()
}

/// Proposes `set-validators` at `proposer` and approves it at `approver`;
/// returns the height the set takes effect at.
fn schedule(proposer: &Org, approver: &Org, set: &[&Org]) -> u64 {
    let at = height(&proposer.api) + AHEAD;
    let at_s = at.to_string();
    let specs: Vec<String> = set
        .iter()
        .map(|o| {
            let shown = ok(&[
                "keys",
                "show",
                s(&o.home.join("keys/node.json")),
                "--output",
                "json",
            ]);
            let public = json(&shown)["public_key"].as_str().unwrap().to_string();
            format!("{}={public}", o.id)
        })
        .collect();
    let mut args = vec!["set-validators", "--at-height", &at_s];
    for spec in &specs {
        args.push("--validator");
        args.push(spec);
    }
    common::consortium::govern(proposer, approver, &args);
    at
}

#[test]
fn four_validators_grow_to_five_and_back_at_stated_heights_under_load() {
    let net = Testnet::up();
    let d = net.d().to_string();
    let all = net.orgs();
    let four: Vec<Org> = all.iter().filter(|o| o.validator).cloned().collect();
    assert_eq!(four.len(), 4);
    let fifth = all.iter().find(|o| o.id == "audit-office").unwrap().clone();
    let apis: Vec<String> = all.iter().map(|o| o.api.clone()).collect();
    wait_until("every node past height 2", 90, || {
        apis.iter().all(|a| height(a) >= 2)
    });
    let (bank, dev) = (four[0].clone(), four[1].clone());

    // Load through the whole test: bounded in rate and time.
    let load_out = net.tmp.path().join("load.json");
    let load = common::consortium::start_load(&net, 50, 90, &load_out);

    // 1. Four to five, at a stated height.
    let old_hash = header(&bank.api, height(&bank.api))["validator_set_hash"].clone();
    let five: Vec<&Org> = four.iter().chain([&fifth]).collect();
    let at = schedule(&bank, &dev, &five);
    assert_eq!(status(&fifth.api).unwrap()["validator"], false);
    wait_until("the five-validator set's height", 180, || {
        height(&bank.api) >= at
    });
    assert_eq!(
        header(&bank.api, at - 1)["validator_set_hash"],
        old_hash,
        "the set changed before its height"
    );
    let new_hash = header(&bank.api, at)["validator_set_hash"].clone();
    assert_ne!(new_hash, old_hash, "the set did not change at {at}");
    wait_until("the fifth validator votes", 60, || {
        status(&fifth.api).is_some_and(|s| s["validator"] == true && s["voting"] == true)
    });

    // 2. With five validators a quorum is four: stop one of the first
    //    four, and the chain goes on only with the fifth's votes.
    let stopped = four[3].clone();
    let pid = pid_of(&stopped.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    let h = height(&bank.api);
    wait_until("progress with one of five stopped", 60, || {
        height(&bank.api) >= h + 5
    });
    ok(&["testnet", "up", "--dir", &d]);

    // 3. Five back to four.
    let four_refs: Vec<&Org> = four.iter().collect();
    let back = schedule(&bank, &dev, &four_refs);
    wait_until("the four-validator set's height", 180, || {
        height(&bank.api) >= back
    });
    assert_eq!(header(&bank.api, back - 1)["validator_set_hash"], new_hash);
    assert_eq!(header(&bank.api, back)["validator_set_hash"], old_hash);
    wait_until("the audit office is an observer again", 30, || {
        status(&fifth.api).is_some_and(|s| s["validator"] == false && s["voting"] == false)
    });

    // 4. The block list names each certificate's signers from the set in
    //    force at its height: the audit office signs only while it is a
    //    validator, and did sign then (with one of four stopped, a quorum
    //    of five needed it); no signer is left as a bare index.
    let lo = at.saturating_sub(5).max(1);
    let mut path = "/v1/blocks?limit=100".to_string();
    let mut fifth_signed = 0;
    for _ in 0..50 {
        let page = common::consortium::api_get(&bank.api, &path).unwrap();
        let items = page["items"].as_array().unwrap();
        for b in items {
            let h = b["height"].as_u64().unwrap();
            let signers: Vec<&str> = b["certificate"]["signers"]
                .as_array()
                .unwrap_or_else(|| panic!("block {h} has its certificate: {b}"))
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            let known = |x: &&str| all.iter().any(|o| o.id == *x);
            assert!(signers.iter().all(known), "block {h}: signers {signers:?}");
            let in_five = h >= at && h < back;
            if signers.contains(&"audit-office") {
                assert!(
                    in_five,
                    "block {h}: the audit office signed outside its set"
                );
                fifth_signed += 1;
            }
            let proposer = b["proposer_org"].as_str().unwrap_or("");
            assert!(
                in_five || proposer != "audit-office",
                "block {h}: proposed by the audit office outside its set"
            );
        }
        let last = items.last().map_or(0, |b| b["height"].as_u64().unwrap());
        match page["next"].as_str() {
            Some(n) if last > lo => path = format!("/v1/blocks?limit=100&after={n}"),
            _ => break,
        }
    }
    assert!(fifth_signed > 0, "the audit office signed no certificate");

    // 5. The load loses nothing and applies nothing twice; every node
    //    agrees; the replay accepts both changes.
    common::consortium::finish_load(load, &load_out);
    common::consortium::every_node_agrees(&all);
}
