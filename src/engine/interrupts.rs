//! Ctrl-C and SIGTERM as a walk sees them: a stream of interrupts, from the process's
//! signals or, in tests, from a sender.

use std::io;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// The interrupts a walk reacts to.
pub struct Interrupts {
    rx: mpsc::UnboundedReceiver<()>,
}

impl Interrupts {
    /// SIGINT and SIGTERM of this process (from now on they no longer kill it). Must be
    /// called inside the runtime.
    pub fn from_signals() -> io::Result<Self> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = interrupt.recv() => {}
                    Some(()) = terminate.recv() => {}
                    else => return,
                }
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        Ok(Self { rx })
    }

    /// Interrupts sent by hand, one per `send(())`.
    pub fn channel() -> (mpsc::UnboundedSender<()>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self { rx })
    }

    /// Waits for the next interrupt; never returns once no more can come.
    pub async fn next(&mut self) {
        if self.rx.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
