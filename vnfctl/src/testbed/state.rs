//! The testbed's state file (`/run/buildvnf/testbed/NAME.json`): everything one testbed created, so that `down`
//! removes exactly that, and the teardown that does it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::TestbedError;
use super::plan::Plan;

/// Default directory of the state files.
pub const STATE_DIR: &str = "/run/buildvnf/testbed";

/// A process the testbed started, identified beyond its pid (pids are reused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start_ticks: u64,
    /// What it is (for messages).
    pub what: String,
}

/// Everything one testbed created, written after every step of `up`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Testbed name.
    pub name: String,
    /// The manifest as applied (YAML, after the hook override); identical `up`s compare it.
    pub manifest: String,
    /// The options that shape what is built (identical `up`s compare them).
    pub options_key: String,
    /// The plan (addresses, MACs, namespaces).
    pub plan: Plan,
    /// Namespaces created, in order.
    pub namespaces: Vec<String>,
    /// Links created, as `NETNS/IFNAME` (they live inside the namespaces and go with them).
    pub links: Vec<String>,
    /// Processes started.
    pub processes: Vec<Proc>,
    /// bpffs pin directories to remove after the processes stopped.
    pub pin_dirs: Vec<PathBuf>,
    /// Temporary directories (config, socket, logs).
    pub temp_dirs: Vec<PathBuf>,
    /// The data plane's metrics endpoint inside the CNF namespace, when it runs.
    pub metrics: Option<String>,
    /// The data plane's gRPC Unix socket, when it runs.
    pub grpc_socket: Option<PathBuf>,
    /// The data plane's log file, when it runs.
    pub dataplane_log: Option<PathBuf>,
    /// Attachments reported by the data plane: (interface, hook).
    pub attached: Vec<(String, String)>,
    /// Sidecar mode: the data plane of every pod (see [`super::sidecar`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<super::sidecar::SidecarRun>,
    /// `up` finished.
    pub complete: bool,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> TestbedError {
    move |source| TestbedError::Io { context, source }
}

/// Path of testbed `name`'s state file in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

impl State {
    /// Writes the state atomically (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<(), TestbedError> {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let p = path(dir, &self.name);
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|source| TestbedError::State {
            path: p.clone(),
            source,
        })?;
        std::fs::write(&tmp, text).map_err(io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &p).map_err(io(format!("rename to {}", p.display())))
    }

    /// Reads testbed `name`'s state, `None` when there is none.
    pub fn load(dir: &Path, name: &str) -> Result<Option<State>, TestbedError> {
        let p = path(dir, name);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("read {}", p.display()))(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| TestbedError::NotState { path: p, source })
    }

    /// Names of every testbed with a state file in `dir`.
    pub fn list(dir: &Path) -> Result<Vec<String>, TestbedError> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("list {}", dir.display()))(e)),
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Whether everything the state lists still exists (namespaces and processes).
    pub fn alive(&self) -> bool {
        let list = existing_namespaces().unwrap_or_default();
        self.namespaces.iter().all(|n| list.contains(n)) && self.processes.iter().all(proc_alive)
    }
}

/// Start time (clock ticks since boot) of process `pid`, if it runs.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields after the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); starttime is field 22
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `p` is still the process we started (same pid and start time, not a zombie).
pub fn proc_alive(p: &Proc) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{}/stat", p.pid))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true);
    !zombie && start_ticks(p.pid) == Some(p.start_ticks)
}

/// Names of the network namespaces that exist (`ip netns list`: the files under /run/netns).
pub fn existing_namespaces() -> Result<Vec<String>, TestbedError> {
    Ok(netkit::netns::list())
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid we started (checked by start time just before) has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Stops `p` (SIGTERM, then SIGKILL after `grace`) if it is still the process we started.
pub fn stop_process(p: &Proc, grace: Duration) {
    if !proc_alive(p) {
        return;
    }
    signal(p.pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while proc_alive(p) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if proc_alive(p) {
        signal(p.pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while proc_alive(p) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Removes everything `state` lists, in reverse order of creation, then the state file. Keeps going after an
/// error and returns the problems it met.
pub fn teardown(state: &State, dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for p in state.processes.iter().rev() {
        stop_process(p, Duration::from_secs(5));
        if proc_alive(p) {
            problems.push(format!("{} (pid {}) did not stop", p.what, p.pid));
        }
    }
    let existing = existing_namespaces().unwrap_or_default();
    for ns in state.namespaces.iter().rev() {
        if !existing.contains(ns) {
            continue;
        }
        if let Err(e) = netkit::netns::del(ns) {
            problems.push(format!("namespace {ns}: {e}"));
        }
    }
    for d in state.pin_dirs.iter().chain(&state.temp_dirs) {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: {e}", d.display())),
        }
    }
    if problems.is_empty() {
        let p = path(dir, &state.name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_identifies_this_process() {
        let me = std::process::id();
        let t = start_ticks(me).expect("our own stat");
        let p = Proc {
            pid: me,
            start_ticks: t,
            what: "test".into(),
        };
        assert!(proc_alive(&p));
        let other = Proc {
            start_ticks: t + 1,
            ..p
        };
        assert!(!proc_alive(&other), "a reused pid is not ours");
    }
}
