//! Linux network namespaces for the partition drills (`testnet drill
//! --partition`): real splits below the node, which the node cannot see
//! or cooperate with.
//!
//! Layout, all of it inside namespaces this module creates (nothing is
//! added to the host's own namespace):
//! * a hub namespace holding a bridge, `10.213.0.254/24`; the drill itself
//!   runs there, so it reaches every node's API;
//! * one namespace per node, its `eth0` one end of a veth pair whose other
//!   end is a port of the hub's bridge, `10.213.0.<i+1>/24`.
//!
//! A partition is a `prohibit` route in a node's namespace to the address
//! of each node on the other side: packets from it never leave, and a
//! local send fails at once (so redials fail fast instead of hanging in
//! SYN retries). Established TCP connections are not told; they look
//! alive until the node's libp2p ping gives up on them, as on a real
//! network. Blocking one direction only makes a one-way link.
//!
//! Needs root and iproute2's `ip`; [`check_available`] says what is
//! missing. Dropping a [`Namespaces`] deletes every namespace it made,
//! which also deletes the veth pairs and the bridge.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Set in the drill process that runs inside the hub namespace: its value
/// is the namespace tag, and it makes the testnet tooling address nodes by
/// their namespace addresses and start them in their namespaces.
pub const ENV: &str = "AIDLEDGER_TESTNET_NETNS";

/// Nodes a namespace layout holds at most (one /24, minus the hub).
pub const MAX_NODES: usize = 200;

/// The subnet's first three octets.
const NET: [u8; 3] = [10, 213, 0];

/// The address of node `i` inside its namespace.
pub fn node_addr(i: usize) -> Ipv4Addr {
    let last = u8::try_from(i + 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(NET[0], NET[1], NET[2], last)
}

pub fn hub_name(tag: &str) -> String {
    format!("{tag}-hub")
}

pub fn node_name(tag: &str, i: usize) -> String {
    format!("{tag}-n{i}")
}

/// The tag of the layout this process runs inside, if any.
pub fn current_tag() -> Option<String> {
    std::env::var(ENV).ok().filter(|t| valid_tag(t))
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether namespace partitions can run here: root, and `ip` with netns
/// support. The error names what is missing.
pub fn check_available() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "network-namespace partitions need root (they create namespaces and veth pairs); \
             run as root, or use the default drill, whose partition is made at the \
             application layer (POST /v1/admin/isolate)"
        );
    }
    let ok = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        bail!(
            "network-namespace partitions need iproute2's `ip` with netns support \
             (apt-get install -y iproute2)"
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A hub and `n` node namespaces, deleted on drop.
#[derive(Debug)]
pub struct Namespaces {
    tag: String,
    n: usize,
    made: Vec<String>,
}

impl Namespaces {
    /// Creates the layout for `n` nodes under a tag unique to this
    /// process. Half-built layouts are removed on error.
    pub fn create(n: usize) -> Result<Namespaces> {
        if n == 0 || n > MAX_NODES {
            bail!("a namespace layout holds 1 to {MAX_NODES} nodes, not {n}");
        }
        let tag = format!("al{}", std::process::id());
        let mut me = Namespaces {
            tag,
            n,
            made: Vec::new(),
        };
        me.build()?;
        Ok(me)
    }

    fn add_ns(&mut self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    fn build(&mut self) -> Result<()> {
        let hub = hub_name(&self.tag);
        self.add_ns(&hub)?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "addr", "add", "10.213.0.254/24", "dev", "br0"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..self.n {
            let ns = node_name(&self.tag, i);
            self.add_ns(&ns)?;
            let port = format!("p{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            let cidr = format!("{}/24", node_addr(i));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn hub(&self) -> String {
        hub_name(&self.tag)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("warning: could not delete network namespace {name}: {e:#}");
            }
        }
    }
}

/// Drops packets from node `from` to node `to` (one direction), inside a
/// layout tagged `tag`. Idempotent.
pub fn block(tag: &str, from: usize, to: usize) -> Result<()> {
    let ns = node_name(tag, from);
    let dst = format!("{}/32", node_addr(to));
    ip(&["-n", &ns, "route", "replace", "prohibit", &dst])
}

/// Undoes [`block`]. Idempotent.
pub fn unblock(tag: &str, from: usize, to: usize) -> Result<()> {
    let ns = node_name(tag, from);
    let dst = format!("{}/32", node_addr(to));
    match ip(&["-n", &ns, "route", "del", "prohibit", &dst]) {
        Ok(()) => Ok(()),
        // Not blocked: nothing to undo.
        Err(e) if format!("{e:#}").contains("No such process") => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names() {
        assert_eq!(node_addr(0), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(node_addr(5), Ipv4Addr::new(10, 213, 0, 6));
        assert_eq!(node_name("al12", 3), "al12-n3");
        assert!(valid_tag("al12345"));
        assert!(!valid_tag("al-1"));
        assert!(!valid_tag(""));
        assert!(!valid_tag("a234567890123"));
    }
}
