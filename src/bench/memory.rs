//! `--server-pid`: samples the broker's resident memory from `/proc/PID/status` while a
//! run is in progress, so a benchmark can record memory next to throughput.
//!
//! Sampling can miss a short spike between samples; VmHWM (the kernel's own high-water
//! mark, over the process's whole life) is reported beside it for that reason.

use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Default)]
pub struct MemoryStats {
    pub pid: u32,
    pub rss_start_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_end_kib: u64,
    pub vm_hwm_kib: u64,
    pub samples: u64,
    /// The process disappeared before the run ended.
    pub exited: bool,
}

/// `(VmRSS, VmHWM)` in KiB from the text of a `/proc/PID/status` file.
pub fn parse_status(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn read(pid: u32) -> std::io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    match parse_status(&text) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        // Kernel threads and zombies have no memory lines.
        _ => Err(std::io::Error::other("no VmRSS/VmHWM (zombie or kernel thread?)")),
    }
}

pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<MemoryStats>,
}

impl Sampler {
    /// Takes the first sample right away so a wrong pid fails before any load is sent.
    pub fn start(pid: u32) -> Result<Self, String> {
        let (rss, hwm) = read(pid).map_err(|e| format!("--server-pid {pid}: /proc/{pid}/status: {e}"))?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut stats = MemoryStats {
                pid,
                rss_start_kib: rss,
                rss_peak_kib: rss,
                rss_end_kib: rss,
                vm_hwm_kib: hwm,
                samples: 1,
                exited: false,
            };
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let last = tokio::select! {
                    _ = ticker.tick() => false,
                    _ = &mut stopped => true,
                };
                match read(pid) {
                    Ok((rss, hwm)) => {
                        stats.samples += 1;
                        stats.rss_peak_kib = stats.rss_peak_kib.max(rss);
                        stats.rss_end_kib = rss;
                        stats.vm_hwm_kib = hwm;
                    }
                    Err(_) => {
                        stats.exited = true;
                        break;
                    }
                }
                if last {
                    break;
                }
            }
            stats
        });
        Ok(Sampler { stop, task })
    }

    /// Takes a last sample and returns what was seen.
    pub async fn finish(self) -> MemoryStats {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let text =
            "Name:\tnsqd\nVmPeak:\t  800000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n";
        assert_eq!(parse_status(text), (Some(40960), Some(51234)));
        assert_eq!(parse_status("Name:\tkthreadd\n"), (None, None));
    }

    #[tokio::test]
    async fn samples_this_process() {
        let sampler = Sampler::start(std::process::id()).unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let stats = sampler.finish().await;
        assert!(stats.samples >= 2, "{stats:?}");
        assert!(stats.rss_peak_kib > 0 && stats.vm_hwm_kib >= stats.rss_start_kib.min(stats.vm_hwm_kib));
        assert!(!stats.exited);
    }

    #[test]
    fn missing_pid_is_a_clear_error() {
        let err = Sampler::start(u32::MAX).err().unwrap();
        assert!(err.starts_with("--server-pid 4294967295:"), "{err}");
    }
}
