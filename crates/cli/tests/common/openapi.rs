//! Real answers checked against the node's own OpenAPI document: the
//! schema the document gives for a route and status must accept what the
//! node actually sends (ADR 019).

use serde_json::{json, Value};

/// Panics unless `value`, the answer to `method template` (a path as the
/// document writes it, e.g. `/v1/programs/{id}`) with `status`, is valid
/// against the document's schema for it.
#[track_caller]
pub fn conforms(doc: &Value, method: &str, template: &str, status: u16, value: &Value) {
    let answer = &doc["paths"][template][method]["responses"][status.to_string()];
    let schema = answer["content"]
        .as_object()
        .and_then(|c| c.values().next())
        .map(|m| m["schema"].clone())
        .unwrap_or_else(|| panic!("{method} {template}: no schema for {status}: {answer}"));
    // The schema's references point into the document's components.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("{method} {template}: the schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status}: the answer does not fit the document:\n{}\n{}",
        errors.join("\n"),
        value.to_string().chars().take(2000).collect::<String>()
    );
}
