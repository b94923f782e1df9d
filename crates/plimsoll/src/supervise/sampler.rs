//! The sampling task: reads the target's tree every interval on the blocking pool (the probe
//! reads /proc synchronously) and sends immutable samples to the loop.

use std::time::Duration;

use plimsoll_probe::{Pid, Probe, ProbeError, SampleDepth};
use tokio::sync::mpsc;
use tokio::time::{interval, MissedTickBehavior};

use super::Message;
use crate::fds::Burst;

/// At most one warning per this long while samples fail for want of a file descriptor.
const EXHAUSTED_WARN_EVERY: Duration = Duration::from_secs(10);

/// Starts sampling the tree rooted at `pid` for run `generation`.
pub(super) fn spawn(
    pid: u32,
    every: Duration,
    generation: u64,
    sender: mpsc::Sender<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut probe: Option<Probe> = None;
        let mut exhausted = Burst::new(EXHAUSTED_WARN_EVERY);
        loop {
            ticker.tick().await;
            let taken = probe.take();
            let joined = tokio::task::spawn_blocking(move || {
                let mut probe = match taken {
                    Some(probe) => probe,
                    None => Probe::new(Pid(pid))?,
                };
                let sample = probe.sample(SampleDepth::Fast)?;
                Ok::<_, ProbeError>((probe, sample))
            })
            .await;
            let message = match joined {
                Ok(Ok((kept, sample))) => {
                    probe = Some(kept);
                    Message::Sample {
                        generation,
                        sample: Box::new(sample),
                    }
                }
                Ok(Err(error)) => {
                    if crate::fds::probe_exhausted(&error) {
                        if let Some(skipped) = exhausted.hit(std::time::Instant::now()) {
                            tracing::warn!(%error, pid, skipped, "out of file descriptors: skipping samples until one is free");
                        }
                    }
                    Message::SampleFailed {
                        generation,
                        error: error.to_string(),
                    }
                }
                Err(error) => Message::SampleFailed {
                    generation,
                    error: error.to_string(),
                },
            };
            if sender.send(message).await.is_err() {
                return;
            }
        }
    })
}
