//! How the workers stop when asked to.

use std::future::Future;

/// Runs `work` until it ends or the process is asked to stop — SIGTERM, as Kubernetes and
/// systemd stop a service, or SIGINT — and then returns the exit status for that signal
/// (143 or 130). A worker that is PID 1 in a container gets no default action for those
/// signals: without this it would only be killed at the end of the grace period.
pub async fn until_stopped<T>(work: impl Future<Output = T>) -> Result<T, u8> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return Ok(work.await);
    };
    tokio::select! {
        out = work => Ok(out),
        _ = term.recv() => Err(128 + 15),
        _ = int.recv() => Err(128 + 2),
    }
}
