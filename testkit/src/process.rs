//! Child processes of a test: signalled and waited for with a deadline.

/// Sends `sig` to the child and waits for it to exit (at most 10 s, else the test fails).
pub fn signal_and_wait(child: &mut std::process::Child, sig: i32) -> std::process::ExitStatus {
    // SAFETY: kill() with the pid of our own child and a standard signal.
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon did not stop on signal {sig}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until `child` (a daemon started with its stderr piped) has created `path`; panics with its
/// stderr when it exits first, or after 20 s.
pub fn wait_for_path(child: &mut std::process::Child, path: &std::path::Path) {
    use std::io::Read;
    let started = std::time::Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("daemon exited early with {status}: {err}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL) and reaped on drop, also when the test fails first.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory of this test process (`<tmp>/<tag>-<pid>`), created empty and removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
