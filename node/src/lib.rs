//! The aidledger node as a library: the tokio shell around the node core
//! (`driver`, `node`), the HTTP API, metrics, the node's configuration,
//! an API client, and the operator commands (`cli`). The `aidledger`
//! binary (`crates/cli`) parses the command line and dispatches here and
//! to the local-consortium tooling (`testnet/`).

pub mod admission;
pub mod api;
pub mod api_docs;
pub mod api_explore;
pub mod api_page;
pub mod api_proof;
pub mod api_trace;
pub mod api_types;
pub mod backup;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod driver;
pub mod explorer;
pub mod http_server;
pub mod join;
pub mod metrics;
pub mod node;
pub mod node_keys;
pub mod openapi;
pub mod problem;
pub mod snapshots;
pub mod test_knobs;
