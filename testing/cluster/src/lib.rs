//! Test-only Kubernetes cluster: the upstream control plane and kubelets, built from source
//! by `build.sh`, with containerd and runc running real containers. Two nodes — `labctl-cpu`
//! and `labctl-gpu`, the GPU pool's (labelled `labctl/pool=gpu`, tainted
//! `nvidia.com/gpu:NoSchedule`, with a fake `nvidia.com/gpu` capacity of 4) — in one network
//! namespace of the cluster's own, where the API server, the nodes and the pods have their
//! addresses (10.200.0.0/24, pods 10.244.0.0/16, Services 10.96.0.0/16); the host reaches
//! the API server at `127.0.0.1:PORT` through a relay. Every process runs in a cgroup of the
//! cluster's, so stopping it leaves no process, mount or namespace. Needs root, containerd,
//! runc, the CNI plugins, iptables and openssl.

mod configs;
pub mod image;
mod pki;
mod process;
mod volumes;

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use labctl_test_host::cgroups::{all_hierarchies, Cgroups};
use labctl_test_host::netns::{run, NeighbourTable, Netns, Relay};
use labctl_test_host::sweep;
use serde_json::json;

pub use image::Image;
pub use volumes::CLASS as STORAGE_CLASS;

/// The CPU pool's node.
pub const CPU_NODE: &str = "labctl-cpu";
/// The GPU pool's node.
pub const GPU_NODE: &str = "labctl-gpu";
/// The pause image every node's containerd uses for pod sandboxes.
const PAUSE_IMAGE: &str = "labctl.test/pause:1";
/// The API server's and CoreDNS's address inside the cluster's namespace.
const API_ADDRESS: &str = "10.200.0.1";
const API_PORT: u16 = 6443;
/// How long the cluster may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A node: its name, address, kubelet ports, pod subnet and bridge.
struct NodeSpec {
    name: &'static str,
    address: &'static str,
    port: u16,
    healthz_port: u16,
    subnet: &'static str,
    bridge: &'static str,
    gpu: bool,
}

const NODES: [NodeSpec; 2] = [
    NodeSpec {
        name: CPU_NODE,
        address: "10.200.0.2",
        port: 10250,
        healthz_port: 10248,
        subnet: "10.244.0.0/22",
        bridge: "cni-cpu",
        gpu: false,
    },
    NodeSpec {
        name: GPU_NODE,
        address: "10.200.0.3",
        port: 10251,
        healthz_port: 10252,
        subnet: "10.244.4.0/22",
        bridge: "cni-gpu",
        gpu: true,
    },
];

/// A running cluster; stopped, with all it started, on drop.
pub struct Cluster {
    kubeconfig: String,
    work: PathBuf,
    started_in: Duration,
    inner: Option<Inner>,
}

/// What is stopped on drop, in this order.
struct Inner {
    runtime: tokio::runtime::Runtime,
    supervisor: process::Supervisor,
    _relay: Relay,
    /// Room in the neighbour table for every pod of a full node (`maxPods`).
    _neighbours: NeighbourTable,
    /// Each node's cgroup root, below the cluster's.
    node_cgroups: Vec<Cgroups>,
    cgroups: Cgroups,
    netns: Arc<Netns>,
}

impl Cluster {
    /// Starts a cluster from the binaries in `bin` (`build.sh`'s directory), with `images`
    /// loaded into every node; returns once both nodes are ready.
    pub fn start(bin: &Path, images: &[Image]) -> io::Result<Self> {
        let started = Instant::now();
        sweep::stale("labctl-test-cluster-", "lkc-", &all_hierarchies());
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let work = std::env::temp_dir().join(format!("labctl-test-cluster-{id}"));
        fs::create_dir_all(&work)?;
        let name = format!("lkc-{id}");
        let netns = Arc::new(Netns::create(&name)?);
        let cgroups = Cgroups::create(&all_hierarchies(), &name)?;
        let supervisor =
            process::Supervisor::new(&netns.path(), cgroups.paths().to_vec(), work.join("logs"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let api: Ipv4Addr = API_ADDRESS.parse().map_err(io::Error::other)?;
        let relay = Relay::inbound(netns.clone(), listener, SocketAddr::from((api, API_PORT)))?;
        let mut cluster = Self {
            kubeconfig: String::new(),
            work,
            started_in: Duration::ZERO,
            inner: Some(Inner {
                runtime,
                supervisor,
                _relay: relay,
                _neighbours: NeighbourTable::at_least([1024, 4096, 8192]),
                node_cgroups: vec![],
                cgroups,
                netns,
            }),
        };
        cluster.boot(bin, images, port, &name)?;
        cluster.started_in = started.elapsed();
        Ok(cluster)
    }

    /// A kubeconfig for the cluster's admin (`system:masters`), at `https://127.0.0.1:PORT`.
    pub fn kubeconfig(&self) -> &str {
        &self.kubeconfig
    }

    /// Where the cluster keeps its files; `logs/` holds each component's output.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// How long the cluster took to start.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    fn inner(&mut self) -> &mut Inner {
        self.inner.as_mut().expect("a running cluster")
    }

    fn boot(&mut self, bin: &Path, images: &[Image], port: u16, name: &str) -> io::Result<()> {
        let work = self.work.clone();
        let ns = self.inner().netns.name.clone();
        // The addresses of the API server and the nodes, on the namespace's loopback: the pods
        // reach them through their bridges' gateways.
        for address in [API_ADDRESS, NODES[0].address, NODES[1].address] {
            run(Command::new("ip").args(["-n", &ns, "addr", "add", &format!("{address}/32"), "dev", "lo"]))?;
        }
        for setting in ["net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"] {
            run(Command::new("ip").args(["netns", "exec", &ns, "sysctl", "-q", "-w", setting]))?;
        }

        let pki = pki::Pki::create(&work.join("pki"), &[API_ADDRESS, "127.0.0.1", "10.96.0.1"])?;
        let server = format!("https://{API_ADDRESS}:{API_PORT}");
        let kubeconfig = |file: &str, user: &str, groups: &[&str]| -> io::Result<PathBuf> {
            let client = pki.client(file, user, groups)?;
            let path = work.join(format!("{file}.kubeconfig"));
            fs::write(&path, configs::kubeconfig(&server, &pki.ca_cert(), &client)?)?;
            Ok(path)
        };
        let admin = pki.client("admin", "labctl-test-admin", &["system:masters"])?;
        self.kubeconfig = configs::kubeconfig(&format!("https://127.0.0.1:{port}"), &pki.ca_cert(), &admin)?;
        let controller_manager = kubeconfig("controller-manager", "system:kube-controller-manager", &[])?;
        let scheduler = kubeconfig("scheduler", "system:kube-scheduler", &[])?;
        let proxy = kubeconfig("proxy", "system:kube-proxy", &[])?;
        let dns = kubeconfig("coredns", "labctl-test-coredns", &["system:masters"])?;
        let apiserver_client =
            pki.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", &["system:masters"])?;
        let path = |p: &Path| p.display().to_string();
        let binary = |b: &str| bin.join(b);
        let s = self.inner();

        s.supervisor.start(
            "etcd",
            &binary("etcd"),
            &strings(&[
                &format!("--data-dir={}", path(&work.join("etcd"))),
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=default=http://127.0.0.1:2380",
                "--listen-metrics-urls=http://127.0.0.1:2381",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
        )?;
        let server_cert = pki.server();
        s.supervisor.start(
            "kube-apiserver",
            &binary("kube-apiserver"),
            &strings(&[
                "--etcd-servers=http://127.0.0.1:2379",
                &format!("--bind-address={API_ADDRESS}"),
                &format!("--advertise-address={API_ADDRESS}"),
                &format!("--secure-port={API_PORT}"),
                &format!("--tls-cert-file={}", path(&server_cert.cert)),
                &format!("--tls-private-key-file={}", path(&server_cert.key)),
                &format!("--client-ca-file={}", path(&pki.ca_cert())),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!("--service-account-key-file={}", path(&pki.service_account_public_key())),
                &format!("--service-account-signing-key-file={}", path(&pki.service_account_key())),
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                &format!("--kubelet-client-certificate={}", path(&apiserver_client.cert)),
                &format!("--kubelet-client-key={}", path(&apiserver_client.key)),
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
            ]),
        )?;
        // Ready once its post-start hooks (RBAC's bootstrap roles among them) have run.
        self.wait("the API server", |client| async move {
            let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else { return false };
            client.request_text(request).await.is_ok_and(|body| body.trim() == "ok")
        })?;
        let s = self.inner();
        for (component, kubeconfig, port) in [
            ("kube-controller-manager", &controller_manager, "10257"),
            ("kube-scheduler", &scheduler, "10259"),
        ] {
            let mut args = vec![
                format!("--kubeconfig={}", path(kubeconfig)),
                format!("--authentication-kubeconfig={}", path(kubeconfig)),
                format!("--authorization-kubeconfig={}", path(kubeconfig)),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                "--leader-elect=false".into(),
            ];
            if component == "kube-controller-manager" {
                args.extend(strings(&[
                    &format!("--cluster-signing-cert-file={}", path(&pki.ca_cert())),
                    &format!("--cluster-signing-key-file={}", path(&pki.ca_key())),
                    &format!("--root-ca-file={}", path(&pki.ca_cert())),
                    &format!("--service-account-private-key-file={}", path(&pki.service_account_key())),
                    "--use-service-account-credentials=true",
                    "--cluster-name=labctl-test",
                ]));
            }
            s.supervisor.start(component, &binary(component), &args)?;
        }

        let volumes = work.join("volumes");
        fs::create_dir_all(&volumes)?;
        let admin_client = self.client()?;
        let s = self.inner();
        s.runtime.block_on(volumes::install(&admin_client)).map_err(io::Error::other)?;
        s.runtime.spawn(volumes::provision(admin_client, volumes));

        let archives = work.join("images");
        fs::create_dir_all(&archives)?;
        let pause = Image {
            name: PAUSE_IMAGE.into(),
            files: vec![(binary("pause"), "/pause".into())],
            entrypoint: vec!["/pause".into()],
        };
        let mut loaded = vec![];
        for (i, image) in std::iter::once(&pause).chain(images).enumerate() {
            let archive = archives.join(format!("{i}.tar"));
            image.write(&archives.join(format!("{i}.work")), &archive)?;
            loaded.push(archive);
        }

        for node in &NODES {
            let dir = work.join(node.name);
            fs::create_dir_all(dir.join("cni"))?;
            fs::write(dir.join("containerd.toml"), configs::containerd(&dir, PAUSE_IMAGE))?;
            fs::write(dir.join("cni/10-labctl.conflist"), configs::cni(&dir, node.bridge, node.subnet))?;
            let s = self.inner();
            s.supervisor.start(
                &format!("containerd-{}", node.name),
                Path::new("containerd"),
                &strings(&["--config", &path(&dir.join("containerd.toml"))]),
            )?;
            let socket = dir.join("containerd.sock");
            self.wait_for(&format!("{}'s containerd", node.name), || socket.exists())?;
            for archive in &loaded {
                run(Command::new("ctr")
                    .args(["--address", &path(&socket), "--namespace", "k8s.io", "images", "import"])
                    .arg(archive))?;
            }
            let node_kubeconfig = kubeconfig(
                &format!("node-{}", node.name),
                &format!("system:node:{}", node.name),
                &["system:nodes"],
            )?;
            // The node's pods go below the cluster's cgroup (removed with it).
            let cgroup_root = format!("/{name}/{}", node.name);
            let node_cgroups = Cgroups::create(&all_hierarchies(), &format!("{name}/{}", node.name))?;
            self.inner().node_cgroups.push(node_cgroups);
            let config = dir.join("kubelet.yaml");
            fs::write(
                &config,
                configs::kubelet(&configs::Kubelet {
                    dir: &dir,
                    address: node.address,
                    port: node.port,
                    healthz_port: node.healthz_port,
                    cgroup_root: &cgroup_root,
                    ca: &pki.ca_cert(),
                    dns: API_ADDRESS,
                    gpu: node.gpu,
                }),
            )?;
            let pool = if node.gpu { "gpu" } else { "cpu" };
            let s = self.inner();
            s.supervisor.start(
                &format!("kubelet-{}", node.name),
                &binary("kubelet"),
                &strings(&[
                    &format!("--config={}", path(&config)),
                    &format!("--kubeconfig={}", path(&node_kubeconfig)),
                    &format!("--root-dir={}", path(&dir.join("kubelet"))),
                    &format!("--hostname-override={}", node.name),
                    &format!("--node-ip={}", node.address),
                    &format!("--node-labels=labctl/pool={pool}"),
                ]),
            )?;
        }
        let s = self.inner();
        s.supervisor.start(
            "kube-proxy",
            &binary("kube-proxy"),
            &strings(&[
                &format!("--kubeconfig={}", path(&proxy)),
                &format!("--hostname-override={CPU_NODE}"),
                "--cluster-cidr=10.244.0.0/16",
                "--proxy-mode=iptables",
                "--masquerade-all",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--conntrack-max-per-core=0",
            ]),
        )?;
        let corefile = work.join("Corefile");
        fs::write(&corefile, configs::corefile(API_ADDRESS, &dns))?;
        s.supervisor.start("coredns", &binary("coredns"), &strings(&["-conf", &path(&corefile)]))?;

        self.wait("both nodes to be ready", |client| async move {
            let nodes = Api::<Node>::all(client);
            let mut ready = 0;
            for node in &NODES {
                let Ok(n) = nodes.get(node.name).await else { return false };
                let conditions = n.status.and_then(|s| s.conditions).unwrap_or_default();
                ready += conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") as usize;
            }
            ready == NODES.len()
        })?;
        self.wait("the GPU node's nvidia.com/gpu capacity", |client| async move {
            let nodes = Api::<Node>::all(client);
            let capacity = json!({ "status": { "capacity": { "nvidia.com/gpu": "4" } } });
            let _ = nodes.patch_status(GPU_NODE, &PatchParams::default(), &Patch::Merge(&capacity)).await;
            let Ok(node) = nodes.get(GPU_NODE).await else { return false };
            node.status.and_then(|s| s.allocatable).is_some_and(|a| a.contains_key("nvidia.com/gpu"))
        })
    }

    /// A client for the cluster's admin.
    fn client(&mut self) -> io::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig).map_err(io::Error::other)?;
        self.inner().runtime.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(io::Error::other)?;
            kube::Client::try_from(config).map_err(io::Error::other)
        })
    }

    /// Waits until `ready` holds, failing early when a component exits.
    fn wait<F, Fut>(&mut self, what: &str, ready: F) -> io::Result<()>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let client = self.client()?;
        let start = Instant::now();
        loop {
            if self.inner().runtime.block_on(ready(client.clone())) {
                return Ok(());
            }
            self.check(what, start)?;
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `ready` holds, failing early when a component exits.
    fn wait_for(&mut self, what: &str, ready: impl Fn() -> bool) -> io::Result<()> {
        let start = Instant::now();
        while !ready() {
            self.check(what, start)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn check(&mut self, what: &str, start: Instant) -> io::Result<()> {
        if let Some(exited) = self.inner().supervisor.exited() {
            return Err(io::Error::other(format!("waiting for {what}: {exited}")));
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(io::Error::other(format!(
                "{what} not there after {}s (logs in {})",
                START_TIMEOUT.as_secs(),
                self.work.join("logs").display()
            )));
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let Inner { runtime, supervisor, _relay, _neighbours, node_cgroups, cgroups, netns } = inner;
            runtime.shutdown_background();
            drop(supervisor);
            // Pods' network namespaces outlive their processes as mounts in containerd's state.
            sweep::unmount_below(&self.work);
            drop(node_cgroups);
            drop(cgroups);
            drop(_relay);
            drop(netns);
            drop(_neighbours);
        }
        if std::env::var_os("LABCTL_TEST_CLUSTER_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.work);
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}
