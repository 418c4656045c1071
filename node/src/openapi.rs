//! The OpenAPI 3.0 description of the HTTP API, served at
//! `/v1/openapi.json`. Kept by hand next to `api.rs`; a test checks that
//! every route in the router is described here.

pub const DOCUMENT: &str = r##"{
  "openapi": "3.0.3",
  "info": {
    "title": "aidledger node API",
    "version": "1",
    "description": "Submit signed transactions and query committed state of one aidledger node. Hashes and keys are lowercase hex; amounts are integer minor units; times are milliseconds since the Unix epoch. Served on loopback by default."
  },
  "paths": {
    "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (OpenMetrics text)", "responses": {"200": {"description": "metrics"}}}},
    "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI document"}}}},
    "/v1/status": {"get": {"summary": "Node status: height, view, leader, peers, state root", "responses": {"200": {"description": "status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NodeStatus"}}}}}}},
    "/v1/txs": {"post": {
      "summary": "Submit a signed transaction",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitRequest"}}}},
      "responses": {
        "200": {"description": "committed (wait_ms > 0, or already committed)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TxStatus"}}}},
        "202": {"description": "admitted, pending", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TxStatus"}}}},
        "400": {"description": "malformed request or transaction", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}},
        "413": {"description": "body too large"},
        "422": {"description": "refused at admission (signature, account, role, nonce, full)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}}
      }}},
    "/v1/txs/batch": {"post": {
      "summary": "Submit up to 2000 signed transactions at once (batch-verified; does not wait)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["txs"], "properties": {"txs": {"type": "array", "maxItems": 2000, "items": {"type": "string", "description": "hex of a SignedTx"}}}}}}},
      "responses": {
        "200": {"description": "one result per transaction, in order: id, and error if refused", "content": {"application/json": {"schema": {"type": "object", "properties": {"admitted": {"type": "integer"}, "results": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string", "nullable": true}, "error": {"type": "string", "nullable": true}}}}}}}}},
        "400": {"description": "malformed request or too many transactions", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}},
        "413": {"description": "body too large"}
      }}},
    "/v1/txs/{id}": {"get": {"summary": "Transaction status and receipt", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TxStatus"}}}}, "400": {"description": "bad id"}}}},
    "/v1/blocks/latest": {"get": {"summary": "The last committed block with its certificate", "responses": {"200": {"description": "block"}, "404": {"description": "no blocks yet"}}}},
    "/v1/blocks/{height}": {"get": {"summary": "A committed block with its certificate", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "block"}, "404": {"description": "no such block"}, "410": {"description": "pruned: below this node's base height (it joined from a snapshot)"}}}},
    "/v1/accounts/{key}": {"get": {"summary": "An account: organisation, roles, next nonce", "parameters": [{"name": "key", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"200": {"description": "account"}, "404": {"description": "unknown"}}}},
    "/v1/orgs": {"get": {"summary": "All organisations", "responses": {"200": {"description": "list"}}}},
    "/v1/orgs/{id}": {"get": {"summary": "One organisation", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "organisation"}, "404": {"description": "unknown"}}}},
    "/v1/programs": {"get": {"summary": "All programs with balances", "responses": {"200": {"description": "list"}}}},
    "/v1/programs/{id}": {"get": {"summary": "One program with balances", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "program"}, "404": {"description": "unknown"}}}},
    "/v1/programs/{id}/trace": {"get": {"summary": "A program's money ledger, releases and related anomalies", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "trace"}, "404": {"description": "unknown"}}}},
    "/v1/applications/{id}/trace": {"get": {"summary": "An application with its program, plan, attestations, releases, ledger entries and anomalies", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "trace"}, "404": {"description": "unknown"}}}},
    "/v1/households/{id}/trace": {"get": {"summary": "A household file with its attestations, releases, payments and anomalies", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "trace"}, "404": {"description": "unknown"}}}},
    "/v1/applications/{id}": {"get": {"summary": "An application with its votes", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "application"}, "404": {"description": "unknown"}}}},
    "/v1/plans/{id}": {"get": {"summary": "A disbursement plan with its tranches", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "plan"}, "404": {"description": "unknown"}}}},
    "/v1/households/{id}": {"get": {"summary": "A household file (salted id, region, status)", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "household"}, "404": {"description": "unknown"}}}},
    "/v1/releases/{id}": {"get": {"summary": "A release and its settlement", "parameters": [{"$ref": "#/components/parameters/Id"}], "responses": {"200": {"description": "release"}, "404": {"description": "unknown"}}}},
    "/v1/anomalies": {"get": {"summary": "Anomalies raised by cross-checks", "parameters": [{"name": "open", "in": "query", "schema": {"type": "boolean"}}], "responses": {"200": {"description": "list"}}}},
    "/v1/admin/isolate": {"post": {"summary": "Fault drills: cut this node off from its peers, or heal it", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["isolated"], "properties": {"isolated": {"type": "boolean"}}}}}}, "responses": {"204": {"description": "done"}}}}
  },
  "components": {
    "parameters": {"Id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}},
    "schemas": {
      "SubmitRequest": {"type": "object", "required": ["tx"], "properties": {"tx": {"type": "string", "description": "canonical encoding of a SignedTx, hex"}, "wait_ms": {"type": "integer", "minimum": 0, "maximum": 120000}}},
      "TxStatus": {"type": "object", "required": ["id", "status"], "properties": {"id": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "committed", "unknown"]}, "height": {"type": "integer", "nullable": true}, "index": {"type": "integer", "nullable": true}, "receipt": {"type": "object", "nullable": true}}},
      "NodeStatus": {"type": "object", "required": ["chain_id", "org", "height", "view", "peers", "state_root", "block_hash"], "properties": {"chain_id": {"type": "string"}, "org": {"type": "string"}, "node_key": {"type": "string"}, "peer_id": {"type": "string"}, "validator": {"type": "boolean"}, "genesis_hash": {"type": "string"}, "base": {"type": "integer", "description": "lowest height whose block this node holds: 1 with all history, the snapshot height on a node that joined from one"}, "height": {"type": "integer"}, "block_hash": {"type": "string"}, "state_root": {"type": "string"}, "view": {"type": "integer"}, "leader": {"type": "string", "nullable": true}, "peers": {"type": "integer"}, "mempool_txs": {"type": "integer"}, "last_block_time_ms": {"type": "integer"}, "voting": {"type": "boolean"}, "next_due_ms": {"type": "integer", "nullable": true}, "next_due_reason": {"type": "string", "nullable": true, "enum": ["now", "tranche", "entitlement-period", "settlement-deadline", "heartbeat", "activation", null]}, "modules": {"type": "array", "items": {"type": "string"}, "description": "contract module versions in force, name@version"}, "upgrade": {"type": "object", "nullable": true, "required": ["modules", "at_height", "missing"], "properties": {"modules": {"type": "array", "items": {"type": "string"}}, "at_height": {"type": "integer"}, "missing": {"type": "array", "items": {"type": "string"}, "description": "versions this build lacks: the node stops before at_height"}}}}},
      "ApiError": {"type": "object", "required": ["error", "code"], "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}
    }
  }
}"##;
