//! Smoke workloads as Jobs: `labctl verify` runs each in the student's namespace, beside the
//! service it proves, and reads how it ended. A passed run is deleted; a failed one stays
//! (a day, by its TTL) for `kubectl logs`, until the next run of the same check.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use labctl_provider_api::{random_token, ProviderError, Tags};

use crate::errors::failed;
use crate::manifests::{self, Service};
use crate::plugin::ServiceConfig;
use crate::waits;

/// Runs `service`'s smoke workload for the student whose service resource has `config`;
/// `Ok` when it gave the right answer within `timeout`, else why not.
pub(crate) async fn run(
    client: &kube::Client,
    service: Service,
    config: &ServiceConfig,
    tags: &Tags,
    timeout: Duration,
) -> Result<(), String> {
    let mut docs = manifests::smoke_job(service, &random_token()[..6], config, tags, timeout.as_secs())
        .map_err(|e| e.to_string())?;
    let job: Job =
        serde_json::from_value(docs.remove(0)).map_err(|e| format!("the smoke job manifest: {e}"))?;
    let (namespace, name) =
        (job.metadata.namespace.clone().unwrap_or_default(), job.metadata.name.clone().unwrap_or_default());
    let check = manifests::smoke_check(service);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    remove_earlier(&jobs, check).await.map_err(|e| e.to_string())?;
    jobs.create(&PostParams::default(), &job)
        .await
        .map_err(|e| failed(&format!("creating job {namespace}/{name}"), e).to_string())?;
    // The Job's own deadline ends it; a little longer here sees it say so.
    match waits::finished(client, &namespace, &name, timeout + Duration::from_secs(30)).await {
        Ok(Ok(())) => {
            let _ = jobs.delete(&name, &DeleteParams::background()).await;
            Ok(())
        }
        Ok(Err(why)) => {
            Err(format!("{why} (job {namespace}/{name}: kubectl logs -n {namespace} job/{name})"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Deletes the earlier runs of `check`, with their pods.
async fn remove_earlier(jobs: &Api<Job>, check: &str) -> Result<(), ProviderError> {
    let earlier = jobs
        .list(&ListParams::default().labels(&format!("labctl/smoke={check}")))
        .await
        .map_err(|e| failed("listing earlier smoke jobs", e))?;
    for name in earlier.items.into_iter().filter_map(|j| j.metadata.name) {
        match jobs.delete(&name, &DeleteParams::background()).await {
            Err(e) if !crate::errors::is_not_found(&e) => {
                return Err(failed(&format!("deleting smoke job {name}"), e))
            }
            _ => {}
        }
    }
    Ok(())
}
