//! Jobs run for real, as processes: what a kubelet and the Job controller would do, enough
//! for `labctl verify` to run its smoke jobs against a student's workers.
//!
//! When a Job appears, its namespace becomes a sandbox of its own (`unshare`: network, mount
//! and PID namespaces; needs root): every Service name of the namespace resolves to loopback
//! there, its Deployments' containers start as processes (each replica once), and when their
//! ports answer, the Job's container runs. Volume claims are directories of the emulator,
//! mounted where the pods ask (over a tmpfs on the parent directory, which must exist
//! here). Images are ignored: a container's command is looked up in the bin directory
//! given to [`crate::Emulator::run_jobs`]. When the Job's container exits, everything in the
//! sandbox is killed; a Pod (carrying the template's labels and `job-name`, deleted with
//! its Job) records the container's exit code and termination message (the
//! tail of its output on failure, as `FallbackToLogsOnError` gives), and the Job's
//! condition says Complete or Failed. The Job's `activeDeadlineSeconds` is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

/// Where the kubelet keeps its state and finds the binaries.
#[derive(Clone)]
pub(crate) struct Kubelet {
    pub bin_dir: PathBuf,
    /// Volumes, hosts files and logs, per namespace.
    pub work_dir: PathBuf,
}

/// Starts every Job not yet started.
pub(crate) async fn start_jobs(
    client: &Client,
    kubelet: &Kubelet,
    started: &mut BTreeSet<String>,
) -> kube::Result<()> {
    for job in Api::<Job>::all(client.clone()).list(&ListParams::default()).await?.items {
        let (Some(ns), Some(name)) = (job.metadata.namespace.clone(), job.metadata.name.clone()) else {
            continue;
        };
        if job.status.as_ref().and_then(|s| s.start_time.as_ref()).is_some()
            || !started.insert(format!("{ns}/{name}"))
        {
            continue;
        }
        let patch = json!({ "status": { "startTime": now(), "active": 1 } });
        Api::<Job>::namespaced(client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let (client, kubelet) = (client.clone(), kubelet.clone());
        tokio::spawn(async move {
            let ended = match run(&client, &kubelet, &job).await {
                Ok(ended) => ended,
                Err(e) => Ended {
                    exit_code: 128,
                    output: format!("the emulator could not run the job: {e}"),
                    deadline: false,
                },
            };
            let _ = finish(&client, &job, &ended).await;
        });
    }
    Ok(())
}

/// How the Job's container ended.
struct Ended {
    exit_code: i32,
    output: String,
    /// Killed at the Job's deadline.
    deadline: bool,
}

/// Runs the Job's namespace and then the Job in a sandbox.
async fn run(client: &Client, kubelet: &Kubelet, job: &Job) -> Result<Ended, String> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    // The namespace's volumes are shared by its Jobs; hosts file and logs are each Job's.
    let volumes = kubelet.work_dir.join(&ns).join("volumes");
    let dir = kubelet.work_dir.join(&ns).join(job.metadata.name.as_deref().unwrap_or("job"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let services = Api::<Service>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let secrets: BTreeMap<String, Secret> = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .filter_map(|s| Some((s.metadata.name.clone()?, s)))
        .collect();

    let mut hosts = String::from("127.0.0.1 localhost\n");
    let mut ports = vec![];
    for service in &services {
        let name = service.metadata.name.clone().unwrap_or_default();
        hosts += &format!("127.0.0.1 {name} {name}.{ns}.svc {name}.{ns}.svc.cluster.local\n");
        ports.extend(service.spec.iter().flat_map(|s| s.ports.iter().flatten()).map(|p| p.port));
    }
    let hosts_file = dir.join("hosts");
    std::fs::write(&hosts_file, hosts).map_err(|e| e.to_string())?;

    let job_pod =
        job.spec.as_ref().and_then(|s| s.template.spec.clone()).ok_or("the job has no pod template")?;
    let mut pods: Vec<(PodSpec, i32)> = deployments
        .iter()
        .filter_map(|d| {
            Some((d.spec.as_ref()?.template.spec.clone()?, d.spec.as_ref()?.replicas.unwrap_or(1)))
        })
        .collect();
    pods.push((job_pod.clone(), 0));
    let mut script = String::from("set -eu\nip link set lo up\n");
    script += &format!("mount --bind {} /etc/hosts\n", quote(&hosts_file.display().to_string()));
    script += &mounts(&volumes, &pods)?;
    for (pod, replicas) in pods.iter().filter(|(_, r)| *r > 0) {
        for replica in 0..*replicas {
            for (i, container) in pod.containers.iter().enumerate() {
                let log = dir.join(format!("{}-{replica}-{i}.log", container.name));
                script += &format!(
                    "{} >{} 2>&1 &\n",
                    command(kubelet, container, &secrets)?,
                    quote(&log.display().to_string())
                );
            }
        }
    }
    // The services' ports answer (as their readiness probes would say), within 30 s.
    for port in ports {
        script += &format!(
            "for i in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.05; done\n\
             (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null || {{ echo \"port {port} never answered: see the logs in {}\" >&2; exit 125; }}\n",
            dir.display()
        );
    }
    let container = job_pod.containers.first().ok_or("the job's pod has no container")?;
    let output = dir.join(format!("{}.log", job.metadata.name.clone().unwrap_or_default()));
    script += &format!(
        "{} >{} 2>&1\n",
        command(kubelet, container, &secrets)?,
        quote(&output.display().to_string())
    );

    let mut child = tokio::process::Command::new("unshare")
        .args(["--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "bash", "-c", &script])
        .kill_on_drop(true)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let deadline = job
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map_or(Duration::MAX, |s| Duration::from_secs(s as u64));
    let status = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(status) => status.map_err(|e| e.to_string())?,
        Err(_) => return Ok(Ended { exit_code: 137, output: String::new(), deadline: true }),
    };
    let mut output = std::fs::read_to_string(&output).unwrap_or_default();
    if output.is_empty() {
        if let Some(mut stderr) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = stderr.read_to_string(&mut output).await;
        }
    }
    Ok(Ended { exit_code: status.code().unwrap_or(137), output, deadline: false })
}

/// The mounts of every volume claim the pods use: a directory per claim, at each mount path.
fn mounts(volumes: &Path, pods: &[(PodSpec, i32)]) -> Result<String, String> {
    let mut at: BTreeMap<String, String> = BTreeMap::new();
    for (pod, _) in pods {
        let claims: BTreeMap<&str, &str> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| Some((v.name.as_str(), v.persistent_volume_claim.as_ref()?.claim_name.as_str())))
            .collect();
        for mount in pod.containers.iter().flat_map(|c| c.volume_mounts.iter().flatten()) {
            let claim = claims
                .get(mount.name.as_str())
                .ok_or_else(|| format!("volume `{}` is not a persistent volume claim", mount.name))?;
            at.insert(mount.mount_path.clone(), (*claim).to_owned());
        }
    }
    let mut script = String::new();
    let mut parents = BTreeSet::new();
    for (path, claim) in at {
        let parent = Path::new(&path)
            .parent()
            .filter(|p| p != &Path::new("/"))
            .ok_or_else(|| format!("cannot mount a volume at {path}"))?;
        if parents.insert(parent.to_owned()) {
            script += &format!("mount -t tmpfs tmpfs {}\n", quote(&parent.display().to_string()));
        }
        let dir = volumes.join(&claim);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        script +=
            &format!("mkdir -p {0}\nmount --bind {1} {0}\n", quote(&path), quote(&dir.display().to_string()));
    }
    Ok(script)
}

/// A container's command line with its environment (values from Secrets resolved).
fn command(
    kubelet: &Kubelet,
    container: &Container,
    secrets: &BTreeMap<String, Secret>,
) -> Result<String, String> {
    let mut words =
        vec!["env".to_owned(), "-i".into(), format!("PATH={}:/usr/bin:/bin", kubelet.bin_dir.display())];
    for var in container.env.iter().flatten() {
        let value = match (&var.value, var.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref())) {
            (Some(value), _) => value.clone(),
            (None, Some(key)) => {
                let data = secrets.get(&key.name).and_then(|s| s.data.as_ref()).and_then(|d| d.get(&key.key));
                String::from_utf8_lossy(
                    &data.ok_or_else(|| format!("secret {}/{} not found", key.name, key.key))?.0,
                )
                .into_owned()
            }
            (None, None) => String::new(),
        };
        words.push(format!("{}={value}", var.name));
    }
    words.extend(container.command.iter().flatten().cloned());
    words.extend(container.args.iter().flatten().cloned());
    Ok(words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "))
}

/// Records how the Job ended: its Pod, and its status.
async fn finish(client: &Client, job: &Job, ended: &Ended) -> kube::Result<()> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let passed = ended.exit_code == 0 && !ended.deadline;
    // The last 80 lines, at most 2 KiB: what FallbackToLogsOnError keeps.
    let lines: Vec<&str> = ended.output.lines().collect();
    let mut message = lines[lines.len().saturating_sub(80)..].join("\n");
    if message.len() > 2048 {
        message = message[message.ceil_char_boundary(message.len() - 2048)..].to_owned();
    }
    let container =
        job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.containers.first());
    let mut labels = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.extend([
        ("batch.kubernetes.io/job-name".to_owned(), name.clone()),
        ("job-name".to_owned(), name.clone()),
    ]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": format!("{name}-pod"), "namespace": ns, "labels": labels },
        "spec": { "restartPolicy": "Never", "containers": [{ "name": container.map_or("job", |c| c.name.as_str()), "image": container.and_then(|c| c.image.clone()) }] },
        "status": {
            "phase": if passed { "Succeeded" } else { "Failed" },
            "containerStatuses": [{
                "name": container.map_or("job", |c| c.name.as_str()), "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "terminated": { "exitCode": ended.exit_code, "reason": if passed { "Completed" } else { "Error" }, "message": if passed { String::new() } else { message } } },
            }],
        },
    }))
    .expect("a pod");
    // The Job's status is what labctl waits on: it is written even if the Pod cannot be.
    let made = if ended.deadline {
        Ok(pod)
    } else {
        Api::<Pod>::namespaced(client.clone(), &ns).create(&PostParams::default(), &pod).await
    };
    let condition = match (passed, ended.deadline) {
        (true, _) => json!({ "type": "Complete", "status": "True" }),
        (false, true) => {
            json!({ "type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline" })
        }
        (false, false) => {
            json!({ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" })
        }
    };
    let counts = if passed { json!({ "succeeded": 1 }) } else { json!({ "failed": 1 }) };
    let mut status = json!({ "active": 0, "completionTime": now(), "conditions": [condition] });
    status.as_object_mut().expect("an object").extend(counts.as_object().expect("an object").clone());
    Api::<Job>::namespaced(client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status })))
        .await?;
    made.map(drop)
}

/// Deletes the Pods of Jobs that are gone (the garbage collector's part).
pub(crate) async fn collect_garbage(client: &Client) -> kube::Result<()> {
    for pod in Api::<Pod>::all(client.clone()).list(&ListParams::default().labels("job-name")).await?.items {
        let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone()) else {
            continue;
        };
        let job = pod.metadata.labels.as_ref().and_then(|l| l.get("job-name")).cloned().unwrap_or_default();
        if Api::<Job>::namespaced(client.clone(), &ns).get_opt(&job).await?.is_none() {
            Api::<Pod>::namespaced(client.clone(), &ns).delete(&name, &Default::default()).await?;
        }
    }
    Ok(())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// `word` quoted for bash.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
