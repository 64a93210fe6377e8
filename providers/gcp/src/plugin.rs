//! The GCP provider as a plugin: its `[provider.gcp]` settings, what a lab gets on GCP (per
//! student a bucket with the datasets and a service account scoped to it), and what it
//! refuses for now (VMs, workers, clusters).

use std::path::Path;
use std::sync::Arc;

use labctl_provider_api::configs::bucket_nodes;
use labctl_provider_api::lab::{Cohort, Lab, LabSections, Student};
use labctl_provider_api::{
    Address, Capabilities, Connected, Endpoints, Findings, Node, Plugin, ProviderSetup, Settings,
    StudentResources,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clients::{ApiEndpoints, Clients, GcpConfig};
use crate::identity::{account_id, CredentialConfig};
use crate::GcpProvider;

/// `[provider.gcp]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpSettings {
    /// The project the lab lives in.
    pub project: String,
    /// Where buckets go, e.g. `europe-west1`.
    pub region: String,
    /// A service-account key file (default: Application Default Credentials).
    pub credentials: Option<String>,
    /// API endpoint overrides (emulators).
    #[serde(default)]
    pub endpoints: ApiEndpoints,
    /// Maximum provider requests per second (default: unlimited).
    pub rate_limit: Option<f64>,
}

/// The GCP provider's plugin.
pub struct GcpPlugin;

impl Plugin for GcpPlugin {
    fn name(&self) -> &'static str {
        "gcp"
    }

    fn settings_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(GcpSettings)).unwrap_or_default()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { key_rotation: true, archive: true, ..Capabilities::default() }
    }

    fn configure(
        &self,
        settings: &Settings<'_>,
        lab: &LabSections<'_>,
        findings: &mut Findings,
    ) -> Option<Box<dyn ProviderSetup>> {
        let allowed = "allowed on gcp for now: [student.bucket] with datasets, and credentials";
        let unsupported = [
            (lab.student.compute.is_some(), lab.spans.compute.clone(), "student VMs"),
            (lab.student.workers.is_some(), lab.spans.workers.clone(), "student workers"),
            (!lab.clusters.is_empty(), lab.spans.cluster.clone(), "clusters"),
        ];
        for (_, span, what) in unsupported.into_iter().filter(|(asked, _, _)| *asked) {
            let message = format!("the gcp provider cannot make {what} yet");
            findings.errors.push(lab.error(span.unwrap_or(0..0), message, allowed));
        }
        let gcp: GcpSettings = settings.parse_into(self.name(), findings)?;
        if !valid_project(&gcp.project) {
            findings.errors.push(lab.error(
                settings.span.clone(),
                format!("`{}` is not a GCP project id", gcp.project),
                "allowed: 6 to 30 lowercase letters, digits and hyphens, starting with a letter",
            ));
            return None;
        }
        Some(Box::new(GcpSetup {
            config: GcpConfig {
                project: gcp.project,
                region: gcp.region,
                credentials: gcp.credentials.map(|c| settings.path_beside(&c)),
                endpoints: gcp.endpoints,
            },
            rate_limit: gcp.rate_limit,
        }))
    }

    fn restore(&self, saved: Value) -> Result<Box<dyn ProviderSetup>, String> {
        serde_json::from_value::<GcpSetup>(saved).map(|s| Box::new(s) as _).map_err(|e| e.to_string())
    }
}

fn valid_project(id: &str) -> bool {
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The GCP provider configured for one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcpSetup {
    /// How it reaches GCP.
    pub config: GcpConfig,
    /// Requests per second allowed, if limited.
    pub rate_limit: Option<f64>,
}

impl ProviderSetup for GcpSetup {
    fn name(&self) -> &'static str {
        "gcp"
    }

    fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    fn expand_student(&self, lab: &Lab, cohort: &Cohort, student: &Student) -> Vec<Node> {
        if lab.student.bucket.is_none() {
            return vec![];
        }
        let mut nodes = bucket_nodes("gcp", lab, cohort, student, &[]);
        let base = Address::student(&student.id);
        let tags = lab.tags(cohort, student);
        let name = lab.resource_name(student);
        let bucket = base.child("bucket").to_string();
        if lab.credentials() {
            // Its grant is on the bucket.
            let config = CredentialConfig {
                student: student.id.clone(),
                account: account_id(&lab.name, &student.id),
                bucket: name,
            };
            nodes.push(Node::new(
                "gcp",
                base.child("credential"),
                "credential",
                &config,
                &tags,
                vec![bucket],
            ));
        }
        nodes
    }

    fn connect(&self, _lab: &str, _bin_dir: &Path) -> Connected {
        Connected {
            provider: Arc::new(GcpProvider { clients: Arc::new(Clients::new(self.config.clone())) }),
            hosted: vec![],
            smoke: Err("students on GCP have no workers yet: nothing to run smoke workloads on".into()),
        }
    }

    /// Their bucket and datasets, and the service account and key that open them.
    fn endpoints(&self, student: &StudentResources) -> Endpoints {
        let attr = |what: &str, key: &str| student.attr(what, key).map(str::to_owned);
        Endpoints {
            bucket: attr("bucket", "url"),
            datasets: student.dataset_paths(),
            access: attr("credential", "email")
                .map(|email| {
                    let access = json!({
                        "project": self.config.project,
                        "service_account": email,
                        "key": attr("credential", "key"),
                    });
                    ("gcp".to_owned(), access)
                })
                .into_iter()
                .collect(),
            ..Endpoints::default()
        }
    }
}
