use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams, ListParams};

#[test]
fn namespaces_over_http() {
    let emu = labctl_kube_emulator::Emulator::start().unwrap();
    let url = emu.url();
    emu.block_on(async move {
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let api: Api<Namespace> = Api::all(client);
        let mut ns = Namespace::default();
        ns.metadata.name = Some("ada".into());
        api.create(&PostParams::default(), &ns).await.unwrap();
        let got = api.get("ada").await.unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("ada"));
        assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
    });
}
