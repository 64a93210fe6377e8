//! Waiting on the cluster: for workloads to be ready, a namespace to be gone, a token to be
//! issued, a job to finish. A wait that runs out fails for good, naming the object and why: trying the same
//! request again would only wait again.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use labctl_provider_api::ProviderError;

use crate::errors::failed;
use crate::manifests::ObjectRef;
use crate::objects;

const POLL: Duration = Duration::from_millis(250);

/// One look at what is awaited.
enum Look<T> {
    Done(T),
    /// Not yet, and why.
    Waiting(String),
}

/// How long a wait may take: from now, or what is left of an earlier one.
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    /// The whole wait, for messages.
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        Self { at: Instant::now() + timeout, timeout }
    }
}

/// Looks with `look` until it is done; past the deadline, fails with `what` (e.g.
/// `deployment a/b is not ready`) and the reason the last look gives. `look` is told
/// whether it is the last, so that it may gather costly reasons only then.
async fn until<T, F, Fut>(what: &str, deadline: Deadline, mut look: F) -> Result<T, ProviderError>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Result<Look<T>, ProviderError>>,
{
    loop {
        let last = Instant::now() >= deadline.at;
        let why = match look(last).await? {
            Look::Done(value) => return Ok(value),
            Look::Waiting(why) => why,
        };
        if last {
            return Err(ProviderError::fatal(format!("{what} after {}s: {why}", deadline.timeout.as_secs())));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `object` is gone (a namespace finishing its termination).
pub(crate) async fn gone(
    client: &kube::Client,
    object: &ObjectRef,
    timeout: Duration,
) -> Result<(), ProviderError> {
    until(&format!("{} is still there", object.describe()), Deadline::after(timeout), |_| async {
        Ok(match objects::get(client, object).await? {
            None => Look::Done(()),
            Some(o) if o.metadata.deletion_timestamp.is_some() => Look::Waiting("terminating".into()),
            Some(_) => Look::Waiting("not being deleted".into()),
        })
    })
    .await
}

/// Waits until every Deployment among `objects` has rolled out, as `kubectl rollout status`
/// judges it.
pub(crate) async fn ready(
    client: &kube::Client,
    objects: &[ObjectRef],
    timeout: Duration,
) -> Result<(), ProviderError> {
    let deadline = Deadline::after(timeout);
    for object in objects.iter().filter(|o| o.kind == "Deployment") {
        let namespace = object.namespace.as_deref().unwrap_or_default();
        let deployments: &Api<Deployment> = &Api::namespaced(client.clone(), namespace);
        until(&format!("{} is not ready", object.describe()), deadline, |last| async move {
            let d = deployments
                .get(&object.name)
                .await
                .map_err(|e| failed(&format!("reading {}", object.describe()), e))?;
            if let Some(stuck) = stalled(&d) {
                return Err(ProviderError::fatal(format!("{} is not ready: {stuck}", object.describe())));
            }
            Ok(match rollout(&d) {
                None => Look::Done(()),
                // The pods' reasons are for the message: asked for on the last look only.
                Some(progress) if last => {
                    Look::Waiting(with_reasons(progress, &d, &pods_waiting(client, namespace, &d).await?))
                }
                Some(progress) => Look::Waiting(progress),
            })
        })
        .await?;
    }
    Ok(())
}

/// How far the rollout is, or `None` once it is complete (kubectl's rule: the controller saw
/// the latest spec, every replica is updated, no old one is left, every updated one is
/// available).
fn rollout(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let (updated, total, available) = (
        status.updated_replicas.unwrap_or(0),
        status.replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    );
    if status.observed_generation < d.metadata.generation {
        Some("the Deployment controller has not seen its latest spec".into())
    } else if updated < want {
        Some(format!("{updated} of {want} replicas updated"))
    } else if total > updated {
        Some(format!("{} old replicas still running", total - updated))
    } else if available < updated {
        Some(format!("{available} of {updated} replicas available"))
    } else {
        None
    }
}

/// A rollout that will not finish by waiting: its progress deadline passed.
fn stalled(d: &Deployment) -> Option<String> {
    let conditions = d.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing")?;
    (progressing.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        .then(|| progressing.message.clone().unwrap_or_else(|| "its progress deadline passed".into()))
}

/// `progress`, with the Deployment's failing conditions and its pods' reasons for waiting.
fn with_reasons(progress: String, d: &Deployment, pods: &[String]) -> String {
    let conditions = d.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    // Conditions in a bad state: ReplicaFailure when true, Available and Progressing when not.
    let failing = conditions
        .filter(|c| (c.type_ == "ReplicaFailure") == (c.status == "True"))
        .filter_map(|c| c.message.clone().or_else(|| c.reason.clone()));
    let mut reasons: Vec<String> = failing.chain(pods.iter().cloned()).collect();
    reasons.dedup();
    if reasons.is_empty() {
        progress
    } else {
        format!("{progress} ({})", reasons.join("; "))
    }
}

/// Why the Deployment's pods are not running: unschedulable, an image that cannot be
/// pulled, a crashing container.
async fn pods_waiting(
    client: &kube::Client,
    namespace: &str,
    d: &Deployment,
) -> Result<Vec<String>, ProviderError> {
    let selector = d.spec.as_ref().and_then(|s| s.selector.match_labels.as_ref());
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return Ok(vec![]) };
    let mut reasons = vec![];
    for pod in pods(client, namespace, selector).await? {
        let status = pod.status.unwrap_or_default();
        let unscheduled =
            status.conditions.iter().flatten().filter(|c| c.type_ == "PodScheduled" && c.status == "False");
        reasons.extend(unscheduled.filter_map(|c| c.message.clone()));
        for container in status.container_statuses.iter().flatten() {
            if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.clone().unwrap_or_default();
                reasons.push(waiting.message.as_ref().map_or(reason.clone(), |m| format!("{reason}: {m}")));
            }
        }
    }
    reasons.sort();
    reasons.dedup();
    Ok(reasons)
}

/// The pods in `namespace` carrying all of `labels`.
async fn pods(
    client: &kube::Client,
    namespace: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Pod>, ProviderError> {
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|e| failed(&format!("listing pods in {namespace}"), e))?;
    Ok(list.items)
}

/// Waits for the token controller to fill in the token of a service-account token Secret.
pub(crate) async fn token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<String, ProviderError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    until(&format!("secret {namespace}/{name} has no token"), Deadline::after(timeout), |_| async {
        let secret =
            secrets.get(name).await.map_err(|e| failed(&format!("reading secret {namespace}/{name}"), e))?;
        Ok(match secret.data.as_ref().and_then(|d| d.get("token")) {
            Some(token) => Look::Done(String::from_utf8_lossy(&token.0).into_owned()),
            None => Look::Waiting("is the cluster's token controller running?".into()),
        })
    })
    .await
}

/// Waits for Job `namespace/name` to finish: `Ok` when it completed, else why it failed —
/// its container's last words (its termination message), the cluster's warnings about it
/// (a quota that kept its pod from being made, a volume that would not mount), and the
/// Job's own reason (its deadline passed).
pub(crate) async fn finished(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Result<(), String>, ProviderError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let outcome =
        until(&format!("job {namespace}/{name} has not finished"), Deadline::after(timeout), |_| async {
            let job =
                jobs.get(name).await.map_err(|e| failed(&format!("reading job {namespace}/{name}"), e))?;
            Ok(match job_outcome(&job) {
                Some(outcome) => Look::Done((outcome, job)),
                None => {
                    Look::Waiting(format!("{} pod(s) active", job.status.and_then(|s| s.active).unwrap_or(0)))
                }
            })
        })
        .await?;
    let (Err(reason), job) = outcome else { return Ok(Ok(())) };
    let mut why = vec![];
    // The legacy `job-name` label, on every version; the selector the server set, if any.
    let selector = job
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.match_labels)
        .unwrap_or_else(|| [("job-name".to_owned(), name.to_owned())].into());
    let list = pods(client, namespace, &selector).await?;
    why.extend(
        list.iter()
            .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
            .find_map(last_words),
    );
    // Its own reason leads when it is not the container's doing (e.g. the deadline).
    let failed_itself = job
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Failed" && c.reason.as_deref() != Some("BackoffLimitExceeded"));
    if failed_itself || why.is_empty() {
        // Why its pod did not get to say: not made, not scheduled, not started.
        let pod_names: Vec<String> = list.iter().filter_map(|p| p.metadata.name.clone()).collect();
        why.extend(
            warnings(client, namespace, |object, reason| {
                (object == name && reason == "FailedCreate") || pod_names.iter().any(|p| p == object)
            })
            .await?,
        );
        why.insert(0, reason);
    }
    Ok(Err(why.join("; ")))
}

/// A terminated container's last words: the last line of its termination message that is
/// not a `note:` (as Rust's panic hint), else its exit code; with the reason it was
/// stopped, if the container did not simply exit (`OOMKilled`).
fn last_words(status: &k8s_openapi::api::core::v1::ContainerStatus) -> Option<String> {
    let terminated = status.state.as_ref()?.terminated.as_ref()?;
    let message = terminated.message.as_deref().unwrap_or_default();
    let line = message.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("note:"));
    let words = line.map_or_else(|| format!("exit code {}", terminated.exit_code), str::to_owned);
    Some(match terminated.reason.as_deref() {
        Some(reason) if !matches!(reason, "Error" | "Completed") => format!("{words} ({reason})"),
        _ => words,
    })
}

/// The distinct Warning events in `namespace` that `about` accepts (by object name and
/// event reason), oldest first.
async fn warnings(
    client: &kube::Client,
    namespace: &str,
    about: impl Fn(&str, &str) -> bool,
) -> Result<Vec<String>, ProviderError> {
    use k8s_openapi::api::core::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events
        .list(&ListParams::default())
        .await
        .map_err(|e| failed(&format!("listing events in {namespace}"), e))?;
    let mut out: Vec<String> = vec![];
    for e in list.items.iter().filter(|e| {
        e.type_.as_deref() == Some("Warning")
            && about(
                e.involved_object.name.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
            )
    }) {
        let message = e.message.clone().unwrap_or_default();
        if !out.contains(&message) {
            out.push(message);
        }
    }
    Ok(out)
}

/// How a Job ended, if it has: `Ok` completed, `Err` failed with the condition's reason.
fn job_outcome(job: &Job) -> Option<Result<(), String>> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    let holds = |type_: &str| conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
    if holds("Complete").is_some() {
        return Some(Ok(()));
    }
    holds("Failed")
        .map(|c| Err(c.message.clone().or_else(|| c.reason.clone()).unwrap_or_else(|| "failed".into())))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn deployment(status: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "mapreduce-workers", "generation": 2 },
            "spec": { "replicas": 2, "selector": {}, "template": {} },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn job_outcomes() {
        let job = |conditions: Value| -> Job {
            serde_json::from_value(json!({ "status": { "conditions": conditions } })).unwrap()
        };
        assert_eq!(job_outcome(&job(json!([]))), None);
        assert_eq!(job_outcome(&job(json!([{ "type": "Complete", "status": "True" }]))), Some(Ok(())));
        let deadline = job(
            json!([{ "type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline" }]),
        );
        assert_eq!(job_outcome(&deadline), Some(Err("Job was active longer than specified deadline".into())));
        assert_eq!(job_outcome(&job(json!([{ "type": "Failed", "status": "False" }]))), None);
    }

    #[test]
    fn last_words_skip_notes() {
        let status = |message: &str, code: i32| -> k8s_openapi::api::core::v1::ContainerStatus {
            let reason = if code == 137 { "OOMKilled" } else { "Error" };
            let terminated = json!({ "exitCode": code, "message": message, "reason": reason });
            serde_json::from_value(json!({ "name": "smoke", "image": "", "imageID": "", "ready": false, "restartCount": 0, "state": { "terminated": terminated } })).unwrap()
        };
        let panic = "thread 'main' panicked at src/main.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(last_words(&status(panic, 101)).unwrap(), "boom");
        assert_eq!(last_words(&status("error: wrong token\n", 2)).unwrap(), "error: wrong token");
        assert_eq!(last_words(&status("", 137)).unwrap(), "exit code 137 (OOMKilled)");
    }

    #[test]
    fn rollouts() {
        let done = deployment(
            json!({ "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2 }),
        );
        assert_eq!(rollout(&done), None);
        let stale = deployment(
            json!({ "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2 }),
        );
        assert_eq!(rollout(&stale).unwrap(), "the Deployment controller has not seen its latest spec");
        // Ready replicas of the old ReplicaSet do not make a finished rollout.
        let rolling = deployment(
            json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3, "readyReplicas": 3 }),
        );
        assert_eq!(rollout(&rolling).unwrap(), "1 old replicas still running");
        let quota = deployment(json!({
            "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0,
            "conditions": [
                { "type": "Available", "status": "False", "message": "Deployment does not have minimum availability." },
                { "type": "ReplicaFailure", "status": "True", "message": "pods \"w-1\" is forbidden: exceeded quota: labctl-quota" },
                { "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated" },
            ],
        }));
        let progress = rollout(&quota).unwrap();
        assert_eq!(progress, "1 of 2 replicas updated");
        assert_eq!(
            with_reasons(progress, &quota, &["ImagePullBackOff: Back-off pulling image \"x\"".into()]),
            "1 of 2 replicas updated (Deployment does not have minimum availability.; pods \"w-1\" is forbidden: exceeded quota: labctl-quota; ImagePullBackOff: Back-off pulling image \"x\")"
        );
        assert_eq!(stalled(&quota), None);
        let deadline = deployment(
            json!({ "conditions": [{ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"w\" has timed out progressing." }] }),
        );
        assert_eq!(stalled(&deadline).unwrap(), "ReplicaSet \"w\" has timed out progressing.");
    }
}
