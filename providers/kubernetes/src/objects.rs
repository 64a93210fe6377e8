//! Server-side apply, reads and deletes of the objects of a rendered manifest, and what of
//! them changed since labctl applied them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use labctl_provider_api::{sha256, ProviderError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::{failed, is_not_found};
use crate::manifests::ObjectRef;

/// labctl's field manager: it owns exactly the fields its manifests set.
pub(crate) const FIELD_MANAGER: &str = "labctl";

/// The API resource of an object labctl renders, and whether it lives in a namespace.
fn resource(object: &ObjectRef) -> Result<ApiResource, ProviderError> {
    use k8s_openapi::api::{core::v1 as core, networking::v1 as net, rbac::v1 as rbac};
    let resource = match (object.api_version.as_str(), object.kind.as_str()) {
        ("v1", "Namespace") => ApiResource::erase::<core::Namespace>(&()),
        ("v1", "ResourceQuota") => ApiResource::erase::<core::ResourceQuota>(&()),
        ("v1", "LimitRange") => ApiResource::erase::<core::LimitRange>(&()),
        ("v1", "ServiceAccount") => ApiResource::erase::<core::ServiceAccount>(&()),
        ("v1", "Secret") => ApiResource::erase::<core::Secret>(&()),
        ("v1", "Service") => ApiResource::erase::<core::Service>(&()),
        ("v1", "PersistentVolumeClaim") => ApiResource::erase::<core::PersistentVolumeClaim>(&()),
        ("rbac.authorization.k8s.io/v1", "Role") => ApiResource::erase::<rbac::Role>(&()),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => ApiResource::erase::<rbac::RoleBinding>(&()),
        ("networking.k8s.io/v1", "NetworkPolicy") => ApiResource::erase::<net::NetworkPolicy>(&()),
        ("apps/v1", "Deployment") => ApiResource::erase::<Deployment>(&()),
        ("batch/v1", "Job") => ApiResource::erase::<k8s_openapi::api::batch::v1::Job>(&()),
        ("apps/v1", "DaemonSet") => ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&()),
        ("storage.k8s.io/v1", "StorageClass") => {
            ApiResource::erase::<k8s_openapi::api::storage::v1::StorageClass>(&())
        }
        (api_version, kind) => {
            return Err(ProviderError::fatal(format!("labctl does not manage {api_version} {kind} objects")))
        }
    };
    Ok(resource)
}

fn api(client: &kube::Client, object: &ObjectRef) -> Result<Api<DynamicObject>, ProviderError> {
    let resource = resource(object)?;
    Ok(match &object.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}

/// An object as labctl applied it: its identity and the fields it set, as the API server
/// stored them (so its normalisation — `0.5` CPU becoming `500m` — is not taken for an
/// edit). A Secret's values are recorded as digests only (see [`digested`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Applied {
    #[serde(flatten)]
    pub object: ObjectRef,
    pub fields: Value,
}

/// A manifest applied part of the way: why it stopped, and what was applied before.
pub(crate) struct Stopped {
    pub error: ProviderError,
    pub applied: Vec<Applied>,
}

/// The kinds labctl deletes and makes again when the API server refuses to update one in
/// place (422): when the merge with fields another manager set is invalid (`kubectl`
/// replaced an env var's `valueFrom` by a `value`, and server-side apply keeps both), or an
/// immutable field changed. Their pods restart on any change anyway; nothing else is made
/// again (a volume claim holds students' work, a service account their token).
const RECREATABLE: &[&str] = &["Deployment"];

/// Applies every document in order (server-side, forcing ownership of labctl's fields back
/// from whoever edited them); returns what was applied.
pub(crate) async fn apply(client: &kube::Client, docs: &[Value]) -> Result<Vec<Applied>, Stopped> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = vec![];
    for doc in docs {
        let result = async {
            let object = ObjectRef::of(doc)?;
            let api = api(client, &object)?;
            let stored = match api.patch(&object.name, &params, &Patch::Apply(doc)).await {
                Err(kube::Error::Api(s)) if s.code == 422 && RECREATABLE.contains(&object.kind.as_str()) => {
                    tracing::info!("recreating {}: {}", object.describe(), s.message);
                    match api.delete(&object.name, &DeleteParams::background()).await {
                        Err(e) if !is_not_found(&e) => Err(e),
                        _ => api.patch(&object.name, &params, &Patch::Apply(doc)).await,
                    }
                }
                result => result,
            }
            .map_err(|e| failed(&format!("applying {}", object.describe()), e))?;
            Ok(Applied {
                fields: project(&digested(doc), &digested(&serde_json::to_value(stored).unwrap_or_default())),
                object,
            })
        };
        match result.await {
            Ok(a) => applied.push(a),
            Err(error) => return Err(Stopped { error, applied }),
        }
    }
    Ok(applied)
}

/// What of labctl's objects changed since it applied them: objects deleted (other than the
/// first, whose loss `read` reports) and fields that now hold something else, as
/// `deployment ns/name: spec.replicas is 5, labctl set 2`.
pub(crate) async fn edits(client: &kube::Client, applied: &[Applied]) -> Result<Vec<String>, ProviderError> {
    let mut edits = vec![];
    for a in applied {
        let Some(live) = get(client, &a.object).await? else {
            edits.push(format!("{}: deleted", a.object.describe()));
            continue;
        };
        let live = digested(&serde_json::to_value(live).unwrap_or_default());
        match first_difference(&a.fields, &live, String::new()) {
            Some((path, _)) if a.object.kind == "Secret" && path.starts_with("data.") => {
                edits.push(format!("{}: {path} holds another value", a.object.describe()))
            }
            Some((path, was)) => edits.push(format!(
                "{}: {path} is {was}, labctl set {}",
                a.object.describe(),
                pointer(&a.fields, &path)
            )),
            None => {}
        }
    }
    Ok(edits)
}

/// `object` with a Secret's values replaced by their SHA-256: enough to tell that a value
/// changed, never the value itself (state is not the place for it). Other kinds as they are.
fn digested(object: &Value) -> Value {
    let mut object = object.clone();
    if object["kind"] == "Secret" {
        if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
            for value in data.values_mut() {
                *value = Value::String(format!(
                    "sha256:{}",
                    sha256(value.as_str().unwrap_or_default().as_bytes())
                ));
            }
        }
        if let Some(fields) = object.as_object_mut() {
            fields.remove("stringData");
        }
    }
    object
}

/// The item of `have` that corresponds to item `i` of a list, `item`: the one with the same
/// `name` in a keyed list (containers, ports, env), else the one at the same index.
fn counterpart<'a>(item: &Value, i: usize, have: &'a [Value]) -> Option<&'a Value> {
    match item.get("name") {
        Some(name) => have.iter().find(|h| h.get("name") == Some(name)),
        None => have.get(i),
    }
}

/// `want`'s fields with the values `have` holds for them.
fn project(want: &Value, have: &Value) -> Value {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => Value::Object(
            w.iter()
                .map(|(k, v)| (k.clone(), h.get(k).map_or_else(|| v.clone(), |hv| project(v, hv))))
                .collect(),
        ),
        (Value::Array(w), Value::Array(h)) => Value::Array(
            w.iter()
                .enumerate()
                .map(|(i, v)| counterpart(v, i, h).map_or_else(|| v.clone(), |hv| project(v, hv)))
                .collect(),
        ),
        (_, have) if !have.is_null() => have.clone(),
        (want, _) => want.clone(),
    }
}

/// The first field of `want` that `have` lacks or holds differently: its dotted path and
/// what `have` holds there. What `have` adds — defaults, status, list items another field
/// manager added — does not count.
fn first_difference(want: &Value, have: &Value, path: String) -> Option<(String, String)> {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().find_map(|(k, v)| match h.get(k) {
            Some(hv) => first_difference(v, hv, join(k)),
            None if v.is_null() => None,
            None => Some((join(k), "unset".to_owned())),
        }),
        (Value::Array(w), Value::Array(h)) if w.iter().all(Value::is_object) => {
            w.iter().enumerate().find_map(|(i, v)| {
                let at = format!("{path}[{i}]");
                match counterpart(v, i, h) {
                    Some(hv) => first_difference(v, hv, at),
                    None => Some((at, "unset".to_owned())),
                }
            })
        }
        _ if want == have => None,
        _ => Some((path, have.to_string())),
    }
}

/// The value at a dotted path made by [`first_difference`], for messages.
fn pointer(value: &Value, path: &str) -> String {
    let mut current = value;
    for part in path.split('.') {
        let (key, indexes) = part.split_once('[').unwrap_or((part, ""));
        current = &current[key];
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            current = &current[index.trim_end_matches(']').parse::<usize>().unwrap_or(usize::MAX)];
        }
    }
    current.to_string()
}

/// The object as the API server has it; `None` if it does not exist.
pub(crate) async fn get(
    client: &kube::Client,
    object: &ObjectRef,
) -> Result<Option<DynamicObject>, ProviderError> {
    api(client, object)?
        .get_opt(&object.name)
        .await
        .map_err(|e| failed(&format!("reading {}", object.describe()), e))
}

/// Deletes the objects, last first; those already gone are fine.
pub(crate) async fn delete(client: &kube::Client, objects: &[ObjectRef]) -> Result<(), ProviderError> {
    for object in objects.iter().rev() {
        match api(client, object)?.delete(&object.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(failed(&format!("deleting {}", object.describe()), e)),
        }
    }
    Ok(())
}

/// The text of key `key` of Secret `namespace/name`, if the Secret exists.
pub(crate) async fn secret_value(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, ProviderError> {
    match Api::<Secret>::namespaced(client.clone(), namespace).get(name).await {
        Ok(s) => Ok(s.data.and_then(|d| d.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok()))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(failed(&format!("reading secret {namespace}/{name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn edits_are_fields_labctl_set_that_changed() {
        let want = json!({ "spec": { "replicas": 2, "template": { "containers": [{ "name": "w", "image": "a" }] } } });
        let defaulted = json!({ "spec": { "replicas": 2, "paused": false, "template": { "containers": [{ "name": "w", "image": "a", "imagePullPolicy": "Always" }] } }, "status": {} });
        assert_eq!(first_difference(&want, &defaulted, String::new()), None);
        let scaled = json!({ "spec": { "replicas": 5, "template": { "containers": [{ "name": "w", "image": "a" }] } } });
        let (path, was) = first_difference(&want, &scaled, String::new()).unwrap();
        assert_eq!(
            (path.as_str(), was.as_str(), pointer(&want, &path)),
            ("spec.replicas", "5", "2".to_owned())
        );
        let image = json!({ "spec": { "replicas": 2, "template": { "containers": [{ "name": "w", "image": "b" }] } } });
        let (path, was) = first_difference(&want, &image, String::new()).unwrap();
        assert_eq!(
            (path.as_str(), was.as_str(), pointer(&want, &path)),
            ("spec.template.containers[0].image", "\"b\"", "\"a\"".to_owned())
        );
    }

    #[test]
    fn what_others_add_to_keyed_lists_is_not_an_edit() {
        let want = json!({ "env": [{ "name": "TOKEN", "value": "t" }], "args": ["worker", "--slots", "2"] });
        let added = json!({ "env": [{ "name": "DEBUG", "value": "1" }, { "name": "TOKEN", "value": "t" }], "args": ["worker", "--slots", "2"] });
        assert_eq!(first_difference(&want, &added, String::new()), None);
        let removed =
            json!({ "env": [{ "name": "DEBUG", "value": "1" }], "args": ["worker", "--slots", "2"] });
        assert_eq!(first_difference(&want, &removed, String::new()), Some(("env[0]".into(), "unset".into())));
        let args = json!({ "env": [{ "name": "TOKEN", "value": "t" }], "args": ["worker"] });
        assert_eq!(first_difference(&want, &args, String::new()).map(|d| d.0), Some("args".into()));
    }

    #[test]
    fn secret_values_are_compared_by_digest_and_never_recorded() {
        let applied =
            json!({ "kind": "Secret", "data": { "token": "dDBrZW4=" }, "stringData": { "x": "y" } });
        let recorded = project(&digested(&applied), &digested(&applied));
        assert!(
            !recorded.to_string().contains("dDBrZW4=") && recorded.get("stringData").is_none(),
            "{recorded}"
        );
        assert_eq!(first_difference(&recorded, &digested(&applied), String::new()), None);
        let edited = json!({ "kind": "Secret", "data": { "token": "b3RoZXI=" } });
        assert_eq!(first_difference(&recorded, &digested(&edited), String::new()).unwrap().0, "data.token");
        // Other kinds keep their data as it is.
        let config = json!({ "kind": "ConfigMap", "data": { "a": "b" } });
        assert_eq!(digested(&config), config);
    }

    #[test]
    fn the_servers_normal_form_is_what_is_compared() {
        // The server stores `0.5` CPU as `500m`: what was applied is recorded in its form.
        let want = json!({ "resources": { "limits": { "cpu": "0.5" } }, "ports": [{ "name": "rpc", "port": 7070 }] });
        let stored = json!({ "resources": { "limits": { "cpu": "500m" } }, "ports": [{ "name": "rpc", "port": 7070, "protocol": "TCP" }], "status": {} });
        let applied = project(&want, &stored);
        assert_eq!(
            applied,
            json!({ "resources": { "limits": { "cpu": "500m" } }, "ports": [{ "name": "rpc", "port": 7070 }] })
        );
        assert_eq!(first_difference(&applied, &stored, String::new()), None);
    }
}
