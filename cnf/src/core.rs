//! The way from a daemon's API into its core task: a bounded command channel, and a call that
//! waits for the reply. The core task alone owns the protocol state; API handlers only send
//! commands.

use tokio::sync::{mpsc, oneshot};

/// Commands queued between the API and the core task at most.
pub const QUEUE: usize = 1024;

/// The core task has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {daemon} is shutting down")]
pub struct CoreGone {
    /// `LMA` or `MAG`.
    pub daemon: &'static str,
}

/// The API's way in: commands of type `C` to the core task.
#[derive(Debug)]
pub struct CoreHandle<C> {
    tx: mpsc::Sender<C>,
    epoch: u64,
    daemon: &'static str,
}

impl<C> Clone for CoreHandle<C> {
    fn clone(&self) -> Self {
        CoreHandle {
            tx: self.tx.clone(),
            epoch: self.epoch,
            daemon: self.daemon,
        }
    }
}

impl<C> CoreHandle<C> {
    /// A handle and the receiving end the core task reads. `epoch` names this run of the
    /// daemon (page tokens and watch cursors of another run are refused).
    pub fn channel(daemon: &'static str, epoch: u64) -> (Self, mpsc::Receiver<C>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (CoreHandle { tx, epoch, daemon }, rx)
    }

    /// This run of the daemon.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The error of a core that stopped.
    pub fn gone(&self) -> CoreGone {
        CoreGone {
            daemon: self.daemon,
        }
    }

    /// Sends a command and waits for its reply.
    pub async fn call<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> C) -> Result<R, CoreGone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    /// Sends a command that has no reply.
    pub async fn send(&self, c: C) -> Result<(), CoreGone> {
        self.tx.send(c).await.map_err(|_| self.gone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_is_answered_and_a_stopped_core_says_so() {
        let (h, mut rx) = CoreHandle::<oneshot::Sender<u32>>::channel("LMA", 3);
        assert_eq!(h.epoch(), 3);
        let core = tokio::spawn(async move {
            let reply = rx.recv().await.unwrap();
            let _ = reply.send(7);
        });
        assert_eq!(h.call(|reply| reply).await, Ok(7));
        core.await.unwrap();
        let e = h.call(|reply| reply).await.unwrap_err();
        assert_eq!(e.to_string(), "the LMA is shutting down");
    }
}
