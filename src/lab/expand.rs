//! Expansion: a validated lab becomes the desired resource graph, with stable addresses
//! and explicit dependencies. The provider expands what it makes; the core adds the
//! placeholder (`null`) resources any lab may have.

use labctl_provider_api::{Address, Node, ProviderSetup, Tags};
use serde_json::Value;

use super::{Lab, Student};

/// The resources the lab wants, dependencies before dependents.
pub fn expand(lab: &Lab, setup: &dyn ProviderSetup) -> Vec<Node> {
    let mut nodes = setup.expand_shared(lab);
    for (cohort, student) in lab.students() {
        nodes.extend(setup.expand_student(lab, cohort, student));
        let tags = lab.tags(cohort, student);
        placeholders(lab, student, &tags, &mut nodes);
    }
    nodes
}

/// The student's `[student.null]` resources, which exist only in state.
fn placeholders(lab: &Lab, student: &Student, tags: &Tags, nodes: &mut Vec<Node>) {
    let Some(placeholders) = &lab.student.null else { return };
    #[derive(serde::Serialize)]
    struct NullConfig {
        input: Option<Value>,
        triggers_replace: Option<Value>,
    }
    let config = NullConfig {
        input: placeholders.input.as_ref().map(toml_to_json),
        triggers_replace: placeholders.triggers_replace.as_ref().map(toml_to_json),
    };
    let base = Address::student(&student.id);
    let first = base.indexed("null", 0);
    for i in 0..*placeholders.count.get_ref() {
        let deps = if i == 0 { vec![] } else { vec![first.to_string()] };
        nodes.push(Node::new("null", base.indexed("null", i), "null", &config, tags, deps));
    }
}

fn toml_to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
