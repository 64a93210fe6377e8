//! A VM's cloud-init user data: the student's account, the worker binaries fetched from the
//! lab's artifacts bucket and checked, and systemd units that keep the workers running.
//! The cloud gives the workers' environment, any key file, and the `labctl-rekey` script
//! that installs a rotated key.

use std::collections::BTreeMap;

use labctl_provider_api::{ports, ProviderError};
use serde::{Deserialize, Serialize};

const TEMPLATE: &str = include_str!("cloud-init.yaml.tera");

/// The ports the workers listen on inside a VM (reached over SSH tunnels or from the
/// student's own VMs: the firewall lets nothing else in).
#[derive(Debug, Serialize)]
pub struct Ports {
    pub mapreduce: u16,
    pub scheduler: u16,
    pub scheduler_http: u16,
}

/// The workers' ports.
pub const PORTS: Ports =
    Ports { mapreduce: ports::MAPREDUCE, scheduler: ports::SCHEDULER, scheduler_http: ports::SCHEDULER_HTTP };

/// A VM's MapReduce: how many workers run beside the coordinator.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MapReduce {
    pub workers: u32,
}

/// A VM's scheduler: how many workers, with how many task slots each.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Scheduler {
    pub workers: u32,
    pub slots: u32,
}

/// How long a VM's links to its worker binaries stay valid: cloud-init fetches them within
/// minutes of the VM's first boot.
pub const BINARY_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// A worker binary the VM fetches.
#[derive(Debug, Serialize)]
pub struct Binary {
    /// A signed GET of the binary in the artifacts bucket: the VM needs no cloud CLI.
    pub url: String,
    /// Checked after download.
    pub sha256: String,
}

/// A file only the student reads (their cloud key).
#[derive(Debug, Serialize)]
pub struct KeyFile {
    pub path: String,
    pub content: String,
}

/// What the user data needs to know.
#[derive(Debug, Serialize)]
pub struct UserData<'a> {
    pub lab: &'a str,
    pub student: &'a str,
    /// The worker binaries by name.
    pub binaries: BTreeMap<String, Binary>,
    /// The student's worker token.
    pub token: &'a str,
    /// The workers' cloud access (the student's own key, scoped to their bucket), as
    /// environment variables.
    pub environment: BTreeMap<String, String>,
    /// Files the cloud access needs, owned by the student.
    pub files: Vec<KeyFile>,
    /// The body of `/usr/local/sbin/labctl-rekey` (after `#!/bin/sh`): reads the student's
    /// new key on stdin, installs it for the workers and restarts them.
    pub rekey: &'a str,
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
pub fn render(data: &UserData) -> Result<String, ProviderError> {
    let context =
        tera::Context::from_serialize(data).map_err(|e| ProviderError::fatal(format!("user data: {e}")))?;
    tera::Tera::one_off(TEMPLATE, &context, false)
        .map_err(|e| ProviderError::fatal(format!("user data template: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mapreduce: Option<MapReduce>, scheduler: Option<Scheduler>, files: Vec<KeyFile>) -> String {
        let binaries = [("lab-mapreduce", "aa11"), ("lab-scheduler", "bb22")]
            .map(|(name, sha256)| {
                let url = format!("https://storage.example/bigdata-artifacts/bin/{name}?Signature=5ig");
                (name.to_owned(), Binary { url, sha256: sha256.to_owned() })
            })
            .into();
        let environment = [("CLOUD_REGION", "eu-west-1"), ("CLOUD_KEY", "secretexample")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        render(&UserData {
            lab: "bigdata",
            student: "ada",
            binaries,
            token: "0123abcd",
            environment,
            files,
            rekey: "set -eu\nread -r key\necho \"CLOUD_KEY=$key\" > /etc/labctl/workers.env\n",
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
            Some(Scheduler { workers: 2, slots: 4 }),
            vec![]
        ));
    }

    #[test]
    fn user_data_with_mapreduce_only_and_a_key_file() {
        let key =
            KeyFile { path: "/etc/labctl/key.json".into(), content: "{\n  \"type\": \"key\"\n}\n".into() };
        insta::assert_snapshot!(sample(Some(MapReduce { workers: 1 }), None, vec![key]));
    }
}
