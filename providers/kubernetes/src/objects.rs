//! Server-side apply, reads, deletes and waits for the objects of a rendered manifest.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use labctl_provider_api::{ErrorKind, ProviderError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::{failed, is_not_found};
use crate::manifests::ObjectRef;

/// labctl's field manager: it owns exactly the fields its manifests set.
pub(crate) const FIELD_MANAGER: &str = "labctl";

const POLL: Duration = Duration::from_millis(250);

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
        ("rbac.authorization.k8s.io/v1", "Role") => ApiResource::erase::<rbac::Role>(&()),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => ApiResource::erase::<rbac::RoleBinding>(&()),
        ("networking.k8s.io/v1", "NetworkPolicy") => ApiResource::erase::<net::NetworkPolicy>(&()),
        ("apps/v1", "Deployment") => ApiResource::erase::<Deployment>(&()),
        (api_version, kind) => return Err(ProviderError::fatal(format!("labctl does not manage {api_version} {kind} objects"))),
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

/// An object as labctl applied it: its identity and the fields it set (a Secret's data
/// left out: it is kept, if at all, as a sensitive attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Applied {
    #[serde(flatten)]
    pub object: ObjectRef,
    pub fields: Value,
}

/// Applies every document in order (server-side, forcing ownership of labctl's fields back
/// from whoever edited them); returns what was applied.
pub(crate) async fn apply(client: &kube::Client, docs: &[Value]) -> Result<Vec<Applied>, ProviderError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = vec![];
    for doc in docs {
        let object = ObjectRef::of(doc)?;
        api(client, &object)?.patch(&object.name, &params, &Patch::Apply(doc)).await.map_err(|e| failed(&format!("applying {}", object.describe()), e))?;
        let mut fields = doc.clone();
        if let Some(fields) = fields.as_object_mut() {
            fields.remove("data");
            fields.remove("stringData");
        }
        applied.push(Applied { object, fields });
    }
    Ok(applied)
}

/// Fields labctl applied that now hold something else, as `deployment ns/name: spec.replicas
/// is 5, labctl set 2`.
pub(crate) async fn edits(client: &kube::Client, applied: &[Applied]) -> Result<Vec<String>, ProviderError> {
    let mut edits = vec![];
    for a in applied {
        let live = match api(client, &a.object)?.get(&a.object.name).await {
            Ok(live) => serde_json::to_value(live).unwrap_or_default(),
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(failed(&format!("reading {}", a.object.describe()), e)),
        };
        if let Some((path, was)) = first_difference(&a.fields, &live, String::new()) {
            edits.push(format!("{}: {path} is {was}, labctl set {}", a.object.describe(), pointer(&a.fields, &path)));
        }
    }
    Ok(edits)
}

/// The first field of `want` that `have` lacks or holds differently (fields `have` adds, such
/// as defaults and status, do not count): its dotted path and what `have` holds there.
fn first_difference(want: &Value, have: &Value, path: String) -> Option<(String, String)> {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().find_map(|(k, v)| match h.get(k) {
            Some(hv) => first_difference(v, hv, join(k)),
            None if v.is_null() => None,
            None => Some((join(k), "unset".to_owned())),
        }),
        (Value::Array(w), Value::Array(h)) if w.len() == h.len() => {
            w.iter().zip(h).enumerate().find_map(|(i, (wv, hv))| first_difference(wv, hv, format!("{path}[{i}]")))
        }
        _ if want == have => None,
        _ => Some((path, have.to_string())),
    }
}

/// The value at a dotted path made by [`first_difference`], for messages.
fn pointer(value: &Value, path: &str) -> String {
    let mut current = value;
    for part in path.split('.') {
        let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
        current = &current[key];
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            current = &current[index.trim_end_matches(']').parse::<usize>().unwrap_or(usize::MAX)];
        }
    }
    current.to_string()
}

/// The objects that are missing (or being deleted), by description.
pub(crate) async fn missing(client: &kube::Client, objects: &[ObjectRef]) -> Result<Vec<String>, ProviderError> {
    let mut gone = vec![];
    for object in objects {
        match api(client, object)?.get(&object.name).await {
            Ok(o) if o.metadata.deletion_timestamp.is_none() => {}
            Ok(_) => gone.push(object.describe()),
            Err(e) if is_not_found(&e) => gone.push(object.describe()),
            Err(e) => return Err(failed(&format!("reading {}", object.describe()), e)),
        }
    }
    Ok(gone)
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

/// Waits until `object` is gone (a namespace finishing its termination).
pub(crate) async fn wait_gone(client: &kube::Client, object: &ObjectRef, timeout: Duration) -> Result<(), ProviderError> {
    let deadline = Instant::now() + timeout;
    loop {
        match api(client, object)?.get(&object.name).await {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(failed(&format!("reading {}", object.describe()), e)),
            Ok(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(ProviderError::new(ErrorKind::Timeout, format!("{} is still terminating after {}s", object.describe(), timeout.as_secs())));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every Deployment among `objects` has all its replicas ready; names the first
/// one that is not, and why, when `timeout` runs out.
pub(crate) async fn wait_ready(client: &kube::Client, objects: &[ObjectRef], timeout: Duration) -> Result<(), ProviderError> {
    let deadline = Instant::now() + timeout;
    for object in objects.iter().filter(|o| o.kind == "Deployment") {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), object.namespace.as_deref().unwrap_or_default());
        loop {
            let d = deployments.get(&object.name).await.map_err(|e| failed(&format!("reading {}", object.describe()), e))?;
            let Some(why) = not_ready(&d) else { break };
            if Instant::now() >= deadline {
                let message = format!("{} is not ready after {}s: {why}", object.describe(), timeout.as_secs());
                return Err(ProviderError::fatal(message));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Why a Deployment is not ready yet, or `None` if it is.
fn not_ready(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    if status.observed_generation < d.metadata.generation {
        return Some("the Deployment controller has not seen its latest spec".into());
    }
    if ready >= want && status.updated_replicas.unwrap_or(0) >= want {
        return None;
    }
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.status != "True")
        .map(|c| format!("{} ({})", c.type_, c.message.clone().or_else(|| c.reason.clone()).unwrap_or_default()))
        .collect();
    let mut why = format!("{ready} of {want} replicas ready");
    if !conditions.is_empty() {
        why = format!("{why}; not {}", conditions.join(", "));
    }
    Some(why)
}

/// Waits for the token controller to fill in the token of a service-account token Secret.
pub(crate) async fn wait_token(client: &kube::Client, namespace: &str, name: &str, timeout: Duration) -> Result<String, ProviderError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let secret = secrets.get(name).await.map_err(|e| failed(&format!("reading secret {namespace}/{name}"), e))?;
        if let Some(token) = secret.data.as_ref().and_then(|d| d.get("token")) {
            return String::from_utf8(token.0.clone()).map_err(|_| ProviderError::fatal(format!("secret {namespace}/{name} holds a token that is not text")));
        }
        if Instant::now() >= deadline {
            return Err(ProviderError::new(
                ErrorKind::Timeout,
                format!("secret {namespace}/{name} has no token after {}s: is the cluster's token controller running?", timeout.as_secs()),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The text of key `key` of Secret `namespace/name`, if the Secret exists.
pub(crate) async fn secret_value(client: &kube::Client, namespace: &str, name: &str, key: &str) -> Result<Option<String>, ProviderError> {
    match Api::<Secret>::namespaced(client.clone(), namespace).get(name).await {
        Ok(s) => Ok(s.data.and_then(|d| d.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok()))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(failed(&format!("reading secret {namespace}/{name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_fields_labctl_set_that_changed() {
        let want = serde_json::json!({ "spec": { "replicas": 2, "template": { "containers": [{ "name": "w", "image": "a" }] } } });
        let defaulted = serde_json::json!({ "spec": { "replicas": 2, "paused": false, "template": { "containers": [{ "name": "w", "image": "a", "imagePullPolicy": "Always" }] } }, "status": {} });
        assert_eq!(first_difference(&want, &defaulted, String::new()), None);
        let scaled = serde_json::json!({ "spec": { "replicas": 5, "template": { "containers": [{ "name": "w", "image": "a" }] } } });
        let (path, was) = first_difference(&want, &scaled, String::new()).unwrap();
        assert_eq!((path.as_str(), was.as_str(), pointer(&want, &path)), ("spec.replicas", "5", "2".to_owned()));
        let image = serde_json::json!({ "spec": { "replicas": 2, "template": { "containers": [{ "name": "w", "image": "b" }] } } });
        let (path, was) = first_difference(&want, &image, String::new()).unwrap();
        assert_eq!((path.as_str(), was.as_str(), pointer(&want, &path)), ("spec.template.containers[0].image", "\"b\"", "\"a\"".to_owned()));
    }

    fn deployment(status: Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "mapreduce-workers", "generation": 2 },
            "spec": { "replicas": 2, "selector": {}, "template": {} },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn readiness() {
        let ready = deployment(serde_json::json!({ "observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 2 }));
        assert_eq!(not_ready(&ready), None);
        let stale = deployment(serde_json::json!({ "observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2 }));
        assert_eq!(not_ready(&stale).unwrap(), "the Deployment controller has not seen its latest spec");
        let stuck = deployment(serde_json::json!({
            "observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 2,
            "conditions": [{ "type": "Available", "status": "False", "message": "Deployment does not have minimum availability." }],
        }));
        assert_eq!(not_ready(&stuck).unwrap(), "1 of 2 replicas ready; not Available (Deployment does not have minimum availability.)");
    }
}
