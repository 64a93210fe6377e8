//! The default StorageClass's provisioner: a host directory per claim, as a hostPath
//! PersistentVolume pre-bound to it (the PV binder controller binds them), deleted with its
//! directory once released. It also serves the classes of the EBS CSI driver (`ebs.csi.aws.com`)
//! and of GKE's persistent-disk CSI driver (`pd.csi.storage.gke.io`), standing in for them as
//! the cluster stands in for EKS and GKE: a class a lab makes there binds its claims here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::json;

/// The default StorageClass's name and provisioner.
pub const CLASS: &str = "labctl-local";
const PROVISIONER: &str = "labctl.test/hostpath";

/// The provisioners served: this cluster's own, and the clouds' it stands in for.
const SERVED: [&str; 3] = [PROVISIONER, "ebs.csi.aws.com", "pd.csi.storage.gke.io"];

/// Makes the default StorageClass.
pub async fn install(client: &Client) -> kube::Result<()> {
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {
            "name": CLASS,
            "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<StorageClass>::all(client.clone()).create(&PostParams::default(), &class).await.map(drop)
}

/// Provisions and deletes volumes until the task is dropped.
pub async fn provision(client: Client, root: PathBuf) {
    loop {
        let _ = reconcile(&client, &root).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn reconcile(client: &Client, root: &Path) -> kube::Result<()> {
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let classes = Api::<StorageClass>::all(client.clone()).list(&ListParams::default()).await?;
    let served: Vec<String> = classes
        .into_iter()
        .filter(|c| SERVED.contains(&c.provisioner.as_str()))
        .filter_map(|c| c.metadata.name)
        .collect();
    for claim in Api::<PersistentVolumeClaim>::all(client.clone()).list(&ListParams::default()).await? {
        let Some(spec) = &claim.spec else { continue };
        let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        let Some(class) = spec.storage_class_name.as_ref().filter(|c| served.contains(c)) else { continue };
        if !pending || spec.volume_name.is_some() {
            continue;
        }
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let name = format!("pvc-{uid}");
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| kube::Error::Service(e.into()))?;
        let size = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": { "name": name, "annotations": { "pv.kubernetes.io/provisioned-by": PROVISIONER } },
            "spec": {
                "capacity": { "storage": size.map(|q| q.0.clone()).unwrap_or_else(|| "1Gi".into()) },
                "accessModes": spec.access_modes,
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": class,
                "hostPath": { "path": dir, "type": "Directory" },
                "claimRef": {
                    "namespace": claim.metadata.namespace,
                    "name": claim.metadata.name,
                    "uid": uid,
                },
            },
        }))
        .map_err(kube::Error::SerdeError)?;
        match volumes.create(&PostParams::default(), &volume).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    for volume in volumes.list(&ListParams::default()).await? {
        let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let provisioned_by =
            volume.metadata.annotations.as_ref().and_then(|a| a.get("pv.kubernetes.io/provisioned-by"));
        let ours = provisioned_by.map(String::as_str) == Some(PROVISIONER);
        if released && ours {
            let name = volume.metadata.name.clone().unwrap_or_default();
            volumes.delete(&name, &DeleteParams::default()).await?;
            let _ = std::fs::remove_dir_all(root.join(&name));
        }
    }
    Ok(())
}
