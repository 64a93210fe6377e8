//! Where the runner learns which VMs should run: the instances an emulated cloud reports,
//! EC2's (moto) or Compute Engine's (`labctl-gcp-emulator`), read with the same SDKs labctl
//! uses.

use async_trait::async_trait;
use base64::Engine;
use tokio::sync::OnceCell;

/// What an instance's VM should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    /// Off, keeping its disk.
    Stopped,
    /// Gone for good, with its disk.
    Ended,
    /// On its way to one of the above.
    Other,
}

/// One labctl instance as the cloud reports it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Unique for the instance's life: a VM made again under the same name is another.
    pub id: String,
    pub state: State,
    /// The public address the cloud gave it (never contacted: the kept ssh_config maps it).
    pub public_ip: Option<String>,
    /// Its cloud-init user data, when the listing carries it.
    pub user_data: Option<Vec<u8>>,
}

/// An emulated cloud whose instances the runner boots.
#[async_trait]
pub trait Cloud: Send + 'static {
    /// Every instance carrying labctl's tags.
    async fn instances(&mut self) -> Result<Vec<Instance>, String>;

    /// The user data of an instance the listing gave none for.
    async fn user_data(&mut self, id: &str) -> Result<Vec<u8>, String>;
}

/// EC2 of one region, as moto serves it.
pub struct Ec2 {
    endpoint: String,
    region: String,
    client: OnceCell<aws_sdk_ec2::Client>,
}

impl Ec2 {
    /// The EC2 API of `region` at `endpoint` (e.g. `http://127.0.0.1:5000`).
    pub fn new(endpoint: &str, region: &str) -> Self {
        Self { endpoint: endpoint.to_owned(), region: region.to_owned(), client: OnceCell::new() }
    }

    async fn client(&self) -> &aws_sdk_ec2::Client {
        self.client
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .endpoint_url(&self.endpoint)
                    .region(aws_config::Region::new(self.region.clone()))
                    .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                        "testing",
                        "testing",
                        None,
                        None,
                        "vm-runner",
                    ))
                    .load()
                    .await;
                aws_sdk_ec2::Client::new(&config)
            })
            .await
    }
}

#[async_trait]
impl Cloud for Ec2 {
    async fn instances(&mut self) -> Result<Vec<Instance>, String> {
        use aws_sdk_ec2::types::{Filter, InstanceStateName as S};
        let labctl = Filter::builder().name("tag-key").values("labctl/lab").build();
        // Every page: ended instances stay listed for a while, and a page holds 100.
        let reservations: Vec<_> = self
            .client()
            .await
            .describe_instances()
            .filters(labctl)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let instances = reservations.iter().flat_map(|r| r.instances());
        Ok(instances
            .filter_map(|i| {
                let state = match i.state().and_then(|s| s.name())? {
                    S::Running => State::Running,
                    S::Stopping | S::Stopped => State::Stopped,
                    S::ShuttingDown | S::Terminated => State::Ended,
                    _ => State::Other,
                };
                let public_ip = i.public_ip_address().map(str::to_owned);
                Some(Instance { id: i.instance_id()?.to_owned(), state, public_ip, user_data: None })
            })
            .collect())
    }

    async fn user_data(&mut self, id: &str) -> Result<Vec<u8>, String> {
        let attribute = self
            .client()
            .await
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| format!("user data of {id}: {e:?}"))?;
        let encoded = attribute.user_data().and_then(|u| u.value()).unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("user data of {id}: {e}"))
    }
}

/// Compute Engine of one zone, as `labctl-gcp-emulator` serves it, read as the project's
/// owner.
pub struct Gce {
    endpoint: String,
    project: String,
    zone: String,
    key: serde_json::Value,
    client: OnceCell<google_cloud_compute_v1::client::Instances>,
}

impl Gce {
    /// The instances of `project` in `zone` at `endpoint`, read with the key file `key`.
    pub fn new(endpoint: &str, project: &str, zone: &str, key: &std::path::Path) -> std::io::Result<Self> {
        let key = serde_json::from_slice(&std::fs::read(key)?).map_err(std::io::Error::other)?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            project: project.to_owned(),
            zone: zone.to_owned(),
            key,
            client: OnceCell::new(),
        })
    }

    async fn client(&self) -> Result<&google_cloud_compute_v1::client::Instances, String> {
        self.client
            .get_or_try_init(|| async {
                let credentials =
                    google_cloud_auth::credentials::service_account::Builder::new(self.key.clone())
                        .build()
                        .map_err(|e| e.to_string())?;
                google_cloud_compute_v1::client::Instances::builder()
                    .with_endpoint(&self.endpoint)
                    .with_credentials(credentials)
                    .build()
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
    }
}

#[async_trait]
impl Cloud for Gce {
    async fn instances(&mut self) -> Result<Vec<Instance>, String> {
        use google_cloud_compute_v1::model::instance::Status as S;
        let (project, zone) = (&self.project, &self.zone);
        let client = self.client().await?;
        let mut found = vec![];
        let mut token = String::new();
        loop {
            let page = client
                .list()
                .set_project(project)
                .set_zone(zone)
                .set_page_token(&token)
                .send()
                .await
                .map_err(|e| format!("listing instances: {e}"))?;
            for i in page.items {
                if !i.labels.contains_key("labctl-lab") {
                    continue;
                }
                let state = match i.status {
                    Some(S::Running) => State::Running,
                    Some(S::Stopped | S::Terminated | S::Suspended) => State::Stopped,
                    _ => State::Other,
                };
                let items = i.metadata.map(|m| m.items).unwrap_or_default();
                let user_data = items.into_iter().find(|m| m.key.as_deref() == Some("user-data"));
                let nic = i.network_interfaces.first();
                found.push(Instance {
                    id: i.id.map(|id| id.to_string()).unwrap_or_default(),
                    state,
                    public_ip: nic.and_then(|n| n.access_configs.first()).and_then(|a| a.nat_ip.clone()),
                    user_data: Some(user_data.and_then(|m| m.value).unwrap_or_default().into_bytes()),
                });
            }
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = next,
                _ => return Ok(found),
            }
        }
    }

    async fn user_data(&mut self, id: &str) -> Result<Vec<u8>, String> {
        Err(format!("instance {id} was listed without its metadata"))
    }
}
