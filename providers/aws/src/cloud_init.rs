//! A VM's cloud-init user data, rendered from `templates/cloud-init.yaml.tera`.

use std::collections::BTreeMap;

use labctl_provider_api::{ports, ProviderError};
use serde::{Deserialize, Serialize};

const TEMPLATE: &str = include_str!("../../../templates/cloud-init.yaml.tera");

/// The ports the workers listen on inside a VM (reached over SSH tunnels or from the
/// student's own VMs: the security group lets nothing else in).
#[derive(Debug, Serialize)]
pub(crate) struct Ports {
    pub mapreduce: u16,
    pub scheduler: u16,
    pub scheduler_http: u16,
}

pub(crate) const PORTS: Ports =
    Ports { mapreduce: ports::MAPREDUCE, scheduler: ports::SCHEDULER, scheduler_http: ports::SCHEDULER_HTTP };

/// A VM's MapReduce: how many workers run beside the coordinator.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct MapReduce {
    pub workers: u32,
}

/// A VM's scheduler: how many workers, with how many task slots each.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Scheduler {
    pub workers: u32,
    pub slots: u32,
}

/// A worker binary the VM fetches.
#[derive(Debug, Serialize)]
pub(crate) struct Binary {
    /// A presigned GET of the binary in the artifacts bucket: the VM needs no AWS CLI.
    pub url: String,
    /// Checked after download.
    pub sha256: String,
}

/// What the user data needs to know.
#[derive(Debug, Serialize)]
pub(crate) struct UserData<'a> {
    pub lab: &'a str,
    pub student: &'a str,
    pub region: &'a str,
    /// The S3 endpoint the workers use, when not AWS's own (an emulator).
    pub endpoint: Option<&'a str>,
    /// The worker binaries by name.
    pub binaries: BTreeMap<String, Binary>,
    /// The student's worker token.
    pub token: &'a str,
    /// The student's AWS key, scoped to their bucket: the workers' S3 access.
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub mapreduce: Option<MapReduce>,
    pub scheduler: Option<Scheduler>,
    pub ports: Ports,
    /// Public keys allowed to log in as the image's default user (the instructors').
    pub ssh_keys: Vec<String>,
    /// The student's own public key: they log in as themselves, and their workers run as
    /// them (reading what they bring to their VM).
    pub student_key: &'a str,
}

/// Renders the user data.
pub(crate) fn render(data: &UserData) -> Result<String, ProviderError> {
    let context =
        tera::Context::from_serialize(data).map_err(|e| ProviderError::fatal(format!("user data: {e}")))?;
    tera::Tera::one_off(TEMPLATE, &context, false)
        .map_err(|e| ProviderError::fatal(format!("user data template: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mapreduce: Option<MapReduce>, scheduler: Option<Scheduler>) -> String {
        let binaries = [("lab-mapreduce", "aa11"), ("lab-scheduler", "bb22")]
            .map(|(name, sha256)| {
                let url = format!(
                    "https://bigdata-artifacts.s3.eu-west-1.amazonaws.com/bin/{name}?X-Amz-Signature=5ig"
                );
                (name.to_owned(), Binary { url, sha256: sha256.to_owned() })
            })
            .into();
        render(&UserData {
            lab: "bigdata",
            student: "ada",
            region: "eu-west-1",
            endpoint: None,
            binaries,
            token: "0123abcd",
            access_key_id: "AKIAEXAMPLE",
            secret_access_key: "secretexample",
            mapreduce,
            scheduler,
            ports: PORTS,
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey instructor@example.edu".into()],
            student_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStudentKey bigdata-ada",
        })
        .unwrap()
    }

    #[test]
    fn user_data_with_both_services() {
        insta::assert_snapshot!(sample(
            Some(MapReduce { workers: 2 }),
            Some(Scheduler { workers: 2, slots: 4 })
        ));
    }

    #[test]
    fn user_data_with_mapreduce_only() {
        insta::assert_snapshot!(sample(Some(MapReduce { workers: 1 }), None));
    }
}
