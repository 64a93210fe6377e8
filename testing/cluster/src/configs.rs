//! The configuration files the cluster's components read.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::pki::Client;

/// A kubeconfig for `server` with the CA and a client certificate embedded.
pub fn kubeconfig(server: &str, ca: &Path, client: &Client) -> std::io::Result<String> {
    let data = |p: &Path| std::fs::read(p).map(|b| STANDARD.encode(b));
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: labctl-test
    cluster:
      server: {server}
      certificate-authority-data: {ca}
users:
  - name: labctl-test
    user:
      client-certificate-data: {cert}
      client-key-data: {key}
contexts:
  - name: labctl-test
    context:
      cluster: labctl-test
      user: labctl-test
current-context: labctl-test
",
        ca = data(ca)?,
        cert = data(&client.cert)?,
        key = data(&client.key)?,
    ))
}

/// A node's containerd: its own root, state (with the pods' network namespaces, so that
/// nothing lands in the host's `/run/netns`), socket, runc root and CNI configuration; the
/// CRI's sandbox image is the locally imported pause image. Containers' OOM score
/// adjustments go no lower than containerd's own (lowering them takes CAP_SYS_RESOURCE,
/// which a sandboxed host may not have).
pub fn containerd(node: &Path, pause_image: &str) -> String {
    let d = node.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{d}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#
    )
}

/// The bridge CNI network of a node: its own bridge and pod subnet, addresses kept below
/// the node's directory.
pub fn cni(node: &Path, bridge: &str, subnet: &str) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "labctl-test",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{ "subnet": "{subnet}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}],
        "dataDir": "{}/cni-ipam"
      }}
    }},
    {{ "type": "portmap", "capabilities": {{ "portMappings": true }} }}
  ]
}}
"#,
        node.display()
    )
}

/// What a kubelet needs to know of its node.
pub struct Kubelet<'a> {
    pub dir: &'a Path,
    pub address: &'a str,
    pub port: u16,
    pub healthz_port: u16,
    pub cgroup_root: &'a str,
    pub ca: &'a Path,
    pub dns: &'a str,
    /// The GPU pool's node: registers with the `nvidia.com/gpu` taint.
    pub gpu: bool,
}

/// A kubelet's configuration: cgroupfs on the cluster's cgroup root (cgroup v1 allowed),
/// webhook authentication and authorization, no image garbage collection (the images
/// cannot be pulled again) and no disk-pressure evictions.
pub fn kubelet(k: &Kubelet) -> String {
    let taints =
        if k.gpu { "registerWithTaints:\n  - key: nvidia.com/gpu\n    effect: NoSchedule\n" } else { "" };
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failCgroupV1: false
failSwapOn: false
clusterDNS: [{dns}]
clusterDomain: cluster.local
resolvConf: \"\"
containerRuntimeEndpoint: unix://{dir}/containerd.sock
podLogsDir: {dir}/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: \"100Mi\", nodefs.available: \"1%\", imagefs.available: \"1%\"}}
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
maxPods: 700
{taints}",
        address = k.address,
        port = k.port,
        healthz = k.healthz_port,
        ca = k.ca.display(),
        cgroup_root = k.cgroup_root,
        dns = k.dns,
        dir = k.dir.display(),
    )
}

/// CoreDNS serving the cluster domain from the API at `address`:53.
pub fn corefile(address: &str, kubeconfig: &Path) -> String {
    format!(
        ".:53 {{
    bind {address}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {} labctl-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
",
        kubeconfig.display()
    )
}
