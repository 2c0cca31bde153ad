//! The machine a run was measured on, from `/proc`, so a recorded figure always travels with its context.

use serde::{Deserialize, Serialize};

/// Cores, memory and kernel of the measuring machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs this process may run on (`available_parallelism`).
    pub cores: usize,
    /// `model name` of the first processor in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`, in KiB.
    pub mem_total_kib: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
}

impl Machine {
    /// Read the description of this machine; a field that cannot be read is recorded as unknown.
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".to_owned()),
            mem_total_kib: mem_total_kib(&read("/proc/meminfo")).unwrap_or(0),
            kernel: match read("/proc/sys/kernel/osrelease").trim() {
                "" => "unknown".to_owned(),
                release => release.to_owned(),
            },
        }
    }
}

/// The first `model name` in the text of `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .filter(|model| !model.is_empty())
}

/// `MemTotal` in KiB from the text of `/proc/meminfo`.
fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    line["MemTotal:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_memory_from_proc_text() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        let meminfo = "MemTotal:       24683656 kB\nMemFree:        16224512 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_683_656));
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn detect_describes_this_machine() {
        let machine = Machine::detect();
        assert!(machine.cores >= 1);
        assert!(!machine.kernel.is_empty());
    }
}
