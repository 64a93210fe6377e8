//! The emulator as labctl's tests start it: it says where it serves once it does, refuses
//! callers without a key it issued, and leaves nothing running once stopped. (Also what
//! makes `cargo test --workspace` build the binary labctl's tests start.)

#![allow(clippy::unwrap_used, reason = "tests fail loudly on what they do not expect")]

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn it_refuses_strangers_and_stops_its_fake_gcs_server_with_it() {
    let deps = std::env::var("LABCTL_GCP_EMULATOR_DEPS")
        .expect("LABCTL_GCP_EMULATOR_DEPS is not set: run the tests through scripts/test.sh");
    let key = std::env::temp_dir().join(format!("labctl-gcp-emulator-test-{}.json", std::process::id()));
    let mut emulator = Command::new(env!("CARGO_BIN_EXE_labctl-gcp-emulator"))
        .args(["--deps", &deps, "--project", "labctl-test", "--owner-key"])
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(emulator.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let http = ready["http"].as_str().unwrap().to_owned();
    let owner: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(owner["client_email"], "labctl-owner@labctl-test.iam.gserviceaccount.com");
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", emulator.id())).unwrap_or_default();
    let fake_gcs: Vec<u32> = children.split_whitespace().map(|p| p.parse().unwrap()).collect();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = |authorization: Option<&'static str>, path: &'static str| {
        runtime.block_on(async {
            let mut request = reqwest::Client::new().get(format!("{http}{path}"));
            if let Some(a) = authorization {
                request = request.header("Authorization", a);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, body["error"]["status"].as_str().unwrap_or_default().to_owned())
        })
    };
    let stranger = (401, "UNAUTHENTICATED".to_owned());
    assert_eq!(refused(None, "/v1/projects/labctl-test/serviceAccounts"), stranger);
    assert_eq!(refused(Some("Bearer not.a.jwt"), "/v1/projects/labctl-test/serviceAccounts"), stranger);
    assert_eq!(refused(None, "/storage/v1/b?project=labctl-test"), stranger);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(emulator.id() as i32, libc::SIGTERM) };
    emulator.wait().unwrap();
    let _ = std::fs::remove_file(&key);
    assert_eq!(fake_gcs.len(), 1, "the emulator runs one fake-gcs-server: {children:?}");
    let start = Instant::now();
    while alive(fake_gcs[0]) {
        assert!(start.elapsed() < Duration::from_secs(10), "fake-gcs-server outlived the emulator");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` runs (a zombie does not: it only waits to be reaped).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(") ").next().is_some_and(|rest| !rest.is_empty() && !rest.starts_with('Z'))
}
