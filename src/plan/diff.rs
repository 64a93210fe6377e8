//! Desired graph × state × what providers see now → actions.

use std::collections::{BTreeSet, HashMap};

use labctl_provider_api::KindSchema;

use super::{Action, ActionKind, Change};
use crate::state::{ResourceState, State};
use labctl_provider_api::Node;

/// What each state resource looks like at the provider now.
pub type Refreshed = HashMap<String, Refresh>;

/// One resource, looked up at its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// As labctl left it (or the provider cannot tell otherwise).
    Unchanged,
    /// Deleted outside labctl.
    Gone,
    /// Changed outside labctl: what was.
    Edited(Vec<String>),
}

/// Which students or cohorts an operation is limited to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub students: Vec<String>,
    pub cohorts: Vec<String>,
}

impl Filter {
    pub fn matches(&self, tags: &labctl_provider_api::Tags) -> bool {
        let student_ok =
            self.students.is_empty() || tags.student.as_ref().is_some_and(|s| self.students.contains(s));
        let cohort_ok =
            self.cohorts.is_empty() || tags.cohort.as_ref().is_some_and(|c| self.cohorts.contains(c));
        student_ok && cohort_ok
    }

    pub fn is_empty(&self) -> bool {
        self.students.is_empty() && self.cohorts.is_empty()
    }
}

/// The actions that take `state` to `desired`. `schema` tells, per provider and kind, which
/// attribute changes force a replacement.
pub fn diff<'a>(
    desired: &[Node],
    state: &State,
    refreshed: &Refreshed,
    schema: impl Fn(&str, &str) -> Option<&'a KindSchema>,
) -> Vec<Action> {
    let mut actions = vec![];
    let mut wanted = BTreeSet::new();
    // Existing resources made anew by this plan: what depends on them is made anew too
    // (a recreated credential has a new token that running services must get). Nodes come
    // dependencies first, so one pass suffices.
    let mut recreated: BTreeSet<&str> = BTreeSet::new();
    for node in desired {
        let address = &node.spec.address;
        wanted.insert(address.as_str());
        let Some(current) = state.resources.get(address) else {
            actions.push(upsert(node, ActionKind::Create, vec![], None));
            continue;
        };
        let recreated_dep = node.deps.iter().find(|d| recreated.contains(d.as_str()));
        let refresh = refreshed.get(address).unwrap_or(&Refresh::Unchanged);
        if *refresh == Refresh::Gone {
            actions.push(upsert(node, ActionKind::Create, vec![], Some("deleted outside labctl".into())));
            recreated.insert(address);
            continue;
        }
        if let Some(dep) = recreated_dep {
            actions.push(upsert(node, ActionKind::Replace, vec![], Some(format!("{dep} is recreated"))));
            recreated.insert(address);
            continue;
        }
        if current.tainted {
            actions.push(upsert(
                node,
                ActionKind::Replace,
                vec![],
                Some("tainted: its creation did not finish".into()),
            ));
            recreated.insert(address);
            continue;
        }
        if current.kind != node.spec.kind || current.provider != node.provider {
            actions.push(upsert(node, ActionKind::Replace, vec![], Some("its kind changed".into())));
            recreated.insert(address);
            continue;
        }
        let kind_schema = schema(&node.provider, &node.spec.kind);
        let mut changes = changes(&current.config, &node.spec.config, kind_schema);
        let reason = match refresh {
            Refresh::Edited(edits) if changes.is_empty() => {
                Some(format!("changed outside labctl: {}", edits.join("; ")))
            }
            _ => None,
        };
        changes.extend(tag_changes(&current.tags, &node.spec.tags));
        if changes.is_empty() && reason.is_none() {
            continue;
        }
        let action =
            if changes.iter().any(|c| c.forces_replace) { ActionKind::Replace } else { ActionKind::Update };
        if action == ActionKind::Replace {
            recreated.insert(address);
        }
        actions.push(upsert(node, action, changes, reason));
    }
    let unwanted = state.resources.iter().filter(|(a, _)| !wanted.contains(a.as_str()));
    actions.extend(deletes(state, unwanted));
    actions
}

/// Adds an update of every desired resource of `kind` that the plan does not touch yet, for
/// `reason` (e.g. rotating credentials' keys), and of whatever depends on one of them, in
/// place (a VM whose workers get the rotated key).
pub fn force_update(desired: &[Node], actions: &mut Vec<Action>, kind: &str, reason: &str) {
    let mut updated: BTreeSet<&str> = BTreeSet::new();
    // Nodes come dependencies first: one pass reaches every dependent.
    for node in desired {
        let address = node.spec.address.as_str();
        let why = if node.spec.kind == kind {
            reason.to_owned()
        } else if let Some(dep) = node.deps.iter().find(|d| updated.contains(d.as_str())) {
            format!("{dep} is updated ({reason}): updated in place to match")
        } else {
            continue;
        };
        updated.insert(address);
        if !actions.iter().any(|a| a.address == address) {
            actions.push(upsert(node, ActionKind::Update, vec![], Some(why)));
        }
    }
}

/// Deletes every state resource matching `filter`.
pub fn destroy_plan(state: &State, filter: &Filter) -> Vec<Action> {
    deletes(state, state.resources.iter().filter(|(_, r)| filter.matches(&r.tags)))
}

/// `actions` of a destroy without the deletion of `kept` and of whatever `kept` depends
/// on in `state`, which must outlive it (a bucket whose work could not be archived).
pub fn keep(actions: Vec<Action>, state: &State, kept: &[String]) -> Vec<Action> {
    let mut staying: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = kept.to_vec();
    while let Some(address) = todo.pop() {
        if let Some(r) = state.resources.get(&address) {
            todo.extend(r.deps.iter().filter(|d| !staying.contains(*d)).cloned());
        }
        staying.insert(address);
    }
    actions
        .into_iter()
        .filter(|a| !staying.contains(&a.address))
        .map(|mut a| {
            a.deps.retain(|d| !staying.contains(d));
            a
        })
        .collect()
}

fn deletes<'a>(state: &State, doomed: impl Iterator<Item = (&'a String, &'a ResourceState)>) -> Vec<Action> {
    // A delete waits for the deletes of everything that depends on it.
    let doomed: Vec<_> = doomed.collect();
    let doomed_set: BTreeSet<&str> = doomed.iter().map(|(a, _)| a.as_str()).collect();
    let mut dependents: HashMap<&str, Vec<String>> = HashMap::new();
    for (address, r) in &state.resources {
        for dep in &r.deps {
            if doomed_set.contains(dep.as_str()) && doomed_set.contains(address.as_str()) {
                dependents.entry(dep.as_str()).or_default().push(address.clone());
            }
        }
    }
    doomed
        .into_iter()
        .map(|(address, r)| Action {
            address: address.clone(),
            action: ActionKind::Delete,
            provider: r.provider.clone(),
            kind: r.kind.clone(),
            tags: r.tags.clone(),
            spec: None,
            deps: dependents.remove(address.as_str()).unwrap_or_default(),
            changes: vec![],
            reason: None,
        })
        .collect()
}

fn upsert(node: &Node, action: ActionKind, changes: Vec<Change>, reason: Option<String>) -> Action {
    Action {
        address: node.spec.address.clone(),
        action,
        provider: node.provider.clone(),
        kind: node.spec.kind.clone(),
        tags: node.spec.tags.clone(),
        spec: Some(node.spec.clone()),
        deps: node.deps.iter().chain(&node.after).cloned().collect(),
        changes,
        reason,
    }
}

fn changes(
    before: &labctl_provider_api::Attributes,
    after: &labctl_provider_api::Attributes,
    schema: Option<&KindSchema>,
) -> Vec<Change> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| Change {
            attribute: k.clone(),
            before: before.get(k).cloned(),
            after: after.get(k).cloned(),
            forces_replace: schema.is_none_or(|s| s.forces_replace(k)),
            tag: false,
        })
        .collect()
}

/// The tags that differ (after creation only `labctl/expires` can), as changes made in place.
fn tag_changes(before: &labctl_provider_api::Tags, after: &labctl_provider_api::Tags) -> Vec<Change> {
    let value = |at: Option<jiff::Timestamp>| at.map(|at| serde_json::Value::String(at.to_string()));
    if before.expires == after.expires {
        return vec![];
    }
    vec![Change {
        attribute: labctl_provider_api::Tags::EXPIRES.to_owned(),
        before: value(before.expires),
        after: value(after.expires),
        forces_replace: false,
        tag: true,
    }]
}

#[cfg(test)]
mod tests {
    use labctl_provider_api::{ResourceSpec, Tags};
    use serde_json::json;

    use super::*;

    fn node(address: &str, kind: &str, deps: &[&str]) -> Node {
        let spec = ResourceSpec {
            address: address.into(),
            kind: kind.into(),
            config: json!({ "v": 1 }).as_object().unwrap().clone(),
            tags: Tags::default(),
        };
        Node {
            provider: "local".into(),
            spec,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            after: vec![],
        }
    }

    fn applied(n: &Node) -> ResourceState {
        ResourceState {
            provider: n.provider.clone(),
            kind: n.spec.kind.clone(),
            id: n.spec.address.clone(),
            config: n.spec.config.clone(),
            attributes: Default::default(),
            sensitive: vec![],
            deps: n.deps.clone(),
            tags: Tags::default(),
            tainted: false,
        }
    }

    /// Each action's address, kind and reason.
    fn summary(actions: &[Action]) -> Vec<(&str, ActionKind, Option<&str>)> {
        actions.iter().map(|a| (a.address.as_str(), a.action, a.reason.as_deref())).collect()
    }

    #[test]
    fn what_depends_on_a_recreated_resource_is_replaced_and_nothing_else() {
        let desired = [
            node("cred", "credential", &[]),
            node("svc", "scheduler", &["cred"]),
            node("other", "bucket", &[]),
        ];
        let mut state = State::new("lab");
        for n in &desired {
            state.resources.insert(n.spec.address.clone(), applied(n));
        }
        let none = |_: &str, _: &str| None;
        assert!(diff(&desired, &state, &Refreshed::new(), none).is_empty());

        let gone: Refreshed = [("cred".to_owned(), Refresh::Gone)].into();
        let actions = diff(&desired, &state, &gone, none);
        assert_eq!(
            summary(&actions),
            vec![
                ("cred", ActionKind::Create, Some("deleted outside labctl")),
                ("svc", ActionKind::Replace, Some("cred is recreated"))
            ]
        );

        let edited: Refreshed = [(
            "svc".to_owned(),
            Refresh::Edited(vec!["deployment a/svc: spec.replicas is 5, labctl set 2".into()]),
        )]
        .into();
        let actions = diff(&desired, &state, &edited, none);
        assert_eq!(
            summary(&actions),
            vec![(
                "svc",
                ActionKind::Update,
                Some("changed outside labctl: deployment a/svc: spec.replicas is 5, labctl set 2")
            )]
        );
    }

    #[test]
    fn what_only_goes_after_a_recreated_resource_stays_and_is_ordered_after_it() {
        let pool = node("pool", "node_pool", &[]);
        let namespace = Node { after: vec!["pool".into()], ..node("namespace", "namespace", &[]) };
        let desired = [pool, namespace];
        let none = |_: &str, _: &str| None;
        let created = diff(&desired, &State::new("lab"), &Refreshed::new(), none);
        assert_eq!(created[1].deps, ["pool"], "made after the pool (and recorded: deleted before it)");

        let mut state = State::new("lab");
        for n in &desired {
            state.resources.insert(n.spec.address.clone(), applied(n));
        }
        let gone: Refreshed = [("pool".to_owned(), Refresh::Gone)].into();
        let actions = diff(&desired, &state, &gone, none);
        assert_eq!(summary(&actions), vec![("pool", ActionKind::Create, Some("deleted outside labctl"))]);
    }

    #[test]
    fn a_moved_expiry_retags_in_place_and_an_edit_still_updates() {
        let mut desired = [node("bucket", "bucket", &[]), node("svc", "scheduler", &[])];
        let mut state = State::new("lab");
        for n in &desired {
            state.resources.insert(n.spec.address.clone(), applied(n));
        }
        let later: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        for n in &mut desired {
            n.spec.tags.expires = Some(later);
        }
        let edited: Refreshed = [("svc".to_owned(), Refresh::Edited(vec!["replicas".into()]))].into();
        let actions = diff(&desired, &state, &edited, |_: &str, _: &str| None);
        assert_eq!(
            summary(&actions),
            vec![
                ("bucket", ActionKind::Update, None),
                ("svc", ActionKind::Update, Some("changed outside labctl: replicas"))
            ]
        );
        let change = &actions[0].changes[..];
        assert_eq!(change.len(), 1);
        assert_eq!((change[0].attribute.as_str(), change[0].before.as_ref()), ("labctl/expires", None));
        assert_eq!(change[0].after, Some(json!("2030-01-01T00:00:00Z")));
        assert!(actions[0].retags_only());
        assert!(actions[1].retags() && !actions[1].retags_only());
    }

    #[test]
    fn a_forced_update_reaches_what_depends_on_it_in_place() {
        let desired =
            [node("cred", "credential", &[]), node("vm", "vm", &["cred"]), node("other", "bucket", &[])];
        let mut actions = vec![];
        force_update(&desired, &mut actions, "credential", "rotation");
        assert_eq!(
            summary(&actions),
            vec![
                ("cred", ActionKind::Update, Some("rotation")),
                ("vm", ActionKind::Update, Some("cred is updated (rotation): updated in place to match")),
            ]
        );
    }

    #[test]
    fn a_kept_resource_keeps_what_it_depends_on_and_the_rest_is_deleted() {
        let nodes = [
            node("net", "network", &[]),
            node("bucket", "bucket", &["net"]),
            node("data", "dataset", &["bucket"]),
            node("vm", "vm", &["net"]),
        ];
        let mut state = State::new("lab");
        for n in &nodes {
            state.resources.insert(n.spec.address.clone(), applied(n));
        }
        let all = destroy_plan(&state, &Filter::default());
        let actions = keep(all, &state, &["bucket".to_owned()]);
        let left: Vec<(&str, &[String])> =
            actions.iter().map(|a| (a.address.as_str(), &a.deps[..])).collect();
        assert_eq!(left, vec![("data", &[][..]), ("vm", &[][..])]);
    }
}
