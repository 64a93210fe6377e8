//! Giving a VM's workers the student's rotated cloud key: `labctl-rekey` (which the cloud
//! writes into the user data) run over SSH as the student, reading the key on stdin.

use std::time::Duration;

use labctl_provider_api::{ErrorKind, Observed, ProviderError};
use serde_json::Value;

use crate::ssh::{Login, SshClient};
use crate::vm_address;

/// The attribute recording the hash of the user data a VM was made with.
pub const USER_DATA_SHA256: &str = "user_data_sha256";

/// How long a key rotation waits for a VM to answer over SSH.
const REKEY_TIMEOUT: Duration = Duration::from_secs(120);

/// The student's current key, for their VM.
pub struct Key<'a> {
    /// The attribute of the VM's record naming the key its workers hold.
    pub attribute: &'a str,
    /// The current key's id.
    pub id: &'a str,
    /// What `labctl-rekey` reads on stdin.
    pub stdin: &'a str,
}

/// Copies what the cloud does not say of a VM (`keys` of its record) from `prior` to `now`,
/// where `now` does not know better.
pub fn carry(prior: &Observed, now: &mut Observed, keys: &[&str]) {
    for key in keys {
        if let Some(value) = prior.attributes.get(*key) {
            now.attributes.entry(*key).or_insert_with(|| value.clone());
        }
    }
}

/// Converges the record `now` of a VM that `prior` recorded: it keeps what the cloud does not
/// say, and if the student's key was rotated since, the VM's workers get the new one.
pub async fn deliver(
    ssh: &SshClient,
    prior: &Observed,
    now: &mut Observed,
    student: &str,
    ssh_private_key: &str,
    key: Key<'_>,
) -> Result<(), ProviderError> {
    carry(prior, now, &[USER_DATA_SHA256, key.attribute]);
    if now.attributes.get(key.attribute).and_then(Value::as_str) == Some(key.id) {
        return Ok(());
    }
    let host = vm_address(&now.attributes)
        .ok_or_else(|| ProviderError::invalid(format!("VM {} has no address", now.id)))?;
    let login = Login { instance_id: &now.id, host, user: student, key: ssh_private_key };
    let script = format!("sudo -n /usr/local/sbin/labctl-rekey <<'KEY'\n{}\nKEY\n", key.stdin.trim_end());
    ssh.run(&login, &script, REKEY_TIMEOUT).await.map_err(|e| {
        ProviderError::new(
            ErrorKind::Unavailable,
            format!(
                "giving VM {} the new key: {e}. Its workers hold the old key, which is deleted: \
                 run `labctl apply --rotate-keys` again once the VM is reachable",
                now.id
            ),
        )
    })?;
    now.attributes.insert(key.attribute.into(), key.id.into());
    Ok(())
}
