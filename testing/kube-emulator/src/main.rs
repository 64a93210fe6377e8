//! Runs the test Kubernetes API server by hand:
//!
//!     labctl-kube-emulator [PORT] [KUBECONFIG] [BIN_DIR]
//!
//! listens on 127.0.0.1:PORT (default: a free port), writes a kubeconfig for it to
//! KUBECONFIG (default `kube-emulator.yaml`) and serves until Ctrl-C. With BIN_DIR (where
//! `lab-mapreduce` and `lab-scheduler` are), Jobs run too; that needs root.

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next() {
        Some(p) => p.parse().map_err(|_| std::io::Error::other(format!("`{p}` is not a port")))?,
        None => 0,
    };
    let kubeconfig = args.next().unwrap_or_else(|| "kube-emulator.yaml".into());
    let emulator =
        labctl_kube_emulator::Emulator::start_on(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    if let Some(bin_dir) = args.next() {
        emulator.run_jobs(std::path::Path::new(&bin_dir));
    }
    std::fs::write(&kubeconfig, emulator.kubeconfig())?;
    println!(
        "Kubernetes API emulator on {}; kubeconfig written to {kubeconfig}. Ctrl-C stops it.",
        emulator.url()
    );
    emulator.block_on(tokio::signal::ctrl_c())
}
