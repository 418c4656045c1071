//! Settings that only tests may turn, read from the environment and
//! compiled in only with the `test-knobs` feature (on in the workspace's
//! test builds, off in a release build, which ignores them).
//!
//! `AIDLEDGER_TEST_MODULES=plans@3` makes this process behave as an older
//! build that carries no module version above the ones named (ADR 017,
//! contract upgrades): `genesis init` and `testnet` pin those versions,
//! and a node treats higher versions as missing, so it stops before an
//! upgrade to them, as a real older release would.
//!
//! `AIDLEDGER_TEST_WIRE_MAX=1` makes the node speak wire versions up to 1
//! only (ADR 017, part 3): the previous release's gossip topics and sync
//! protocol, for the rolling wire-upgrade test.

use aidledger_contracts::ModuleVersion;

/// The environment variable naming the module ceiling.
pub const MODULES_VAR: &str = "AIDLEDGER_TEST_MODULES";

/// The module ceiling set by [`MODULES_VAR`]: empty when unset, or in a
/// build without the `test-knobs` feature.
pub fn module_ceiling() -> anyhow::Result<Vec<ModuleVersion>> {
    let Ok(text) = std::env::var(MODULES_VAR) else {
        return Ok(Vec::new());
    };
    if !cfg!(feature = "test-knobs") {
        tracing::warn!("{MODULES_VAR} is set but this build has no test knobs; it is ignored");
        return Ok(Vec::new());
    }
    parse_ceiling(&text)
}

/// The environment variable capping the wire version.
pub const WIRE_VAR: &str = "AIDLEDGER_TEST_WIRE_MAX";

/// The highest wire version this node speaks: [`WIRE_VAR`] if set (in a
/// build with test knobs), else the build's newest.
pub fn wire_max() -> anyhow::Result<u32> {
    use aidledger_types::wire::{WIRE_MIN, WIRE_VERSION};
    let Ok(text) = std::env::var(WIRE_VAR) else {
        return Ok(WIRE_VERSION);
    };
    if !cfg!(feature = "test-knobs") {
        tracing::warn!("{WIRE_VAR} is set but this build has no test knobs; it is ignored");
        return Ok(WIRE_VERSION);
    }
    let v: u32 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{WIRE_VAR}: {text:?} is not a number"))?;
    anyhow::ensure!(
        (WIRE_MIN..=WIRE_VERSION).contains(&v),
        "{WIRE_VAR}: {v} is not a wire version this build speaks ({WIRE_MIN} to {WIRE_VERSION})"
    );
    Ok(v)
}

fn parse_ceiling(text: &str) -> anyhow::Result<Vec<ModuleVersion>> {
    let mut out: Vec<ModuleVersion> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let m: ModuleVersion = part
            .parse()
            .map_err(|e| anyhow::anyhow!("{MODULES_VAR}: {e}"))?;
        anyhow::ensure!(
            aidledger_contracts::MODULE_ORDER.contains(&m.name.as_str()),
            "{MODULES_VAR}: {:?} is not a module (the modules are {})",
            m.name,
            aidledger_contracts::MODULE_ORDER.join(", ")
        );
        anyhow::ensure!(
            aidledger_contracts::carries(&m),
            "{MODULES_VAR}: this build does not carry {m}"
        );
        anyhow::ensure!(
            out.iter().all(|o| o.name != m.name),
            "{MODULES_VAR}: {} is named twice",
            m.name
        );
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceiling_names_carried_versions_once() {
        let c = parse_ceiling("plans@3").unwrap();
        assert_eq!(c[0].to_string(), "plans@3");
        assert!(parse_ceiling("").unwrap().is_empty());
        for bad in [
            "plans",
            "plans@x",
            "nothing@1",
            "plans@99",
            "plans@3,plans@4",
        ] {
            assert!(parse_ceiling(bad).is_err(), "{bad} was accepted");
        }
    }
}
