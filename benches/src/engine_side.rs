//! The benches' side of the engine placements: `--engine host|inproc|daemon`
//! ([`EngineKind`]) and the `weir engine` daemon a bench starts ([`DaemonProcess`]). The
//! transport calls themselves go through [`weir_firmware::net::Net`], which serves them
//! from a `Host`, a firmware engine thread of the peer process, or a daemon, and turns the
//! ring's completions back into the transport's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use weir_firmware::net::{Mem, Net, Placement};

/// `--engine`: where a bench's weir peers run their engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// Each peer's own `Host` (the engine thread inside `weir_datapath::Host`).
    #[default]
    Host,
    /// A firmware engine thread in each peer process.
    Inproc,
    /// A `weir engine` daemon per peer "host", started by the bench.
    Daemon,
}

impl EngineKind {
    /// `host`, `inproc` or `daemon`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Host => "host",
            EngineKind::Inproc => "inproc",
            EngineKind::Daemon => "daemon",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<EngineKind> {
        [EngineKind::Host, EngineKind::Inproc, EngineKind::Daemon]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// A `weir engine` daemon the bench started; stopped (SIGTERM, then killed) when dropped.
#[derive(Debug)]
pub struct DaemonProcess {
    child: std::process::Child,
    socket: PathBuf,
}

impl DaemonProcess {
    /// Start `program args…` (a `weir engine` command line serving `socket`) and wait until
    /// its socket accepts connections (at most 10 s).
    pub fn spawn(
        program: &std::path::Path,
        args: &[String],
        socket: &std::path::Path,
    ) -> Result<DaemonProcess, String> {
        let _ = std::fs::remove_file(socket);
        let child = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the engine daemon {}: {e}", program.display()))?;
        let mut d = DaemonProcess {
            child,
            socket: socket.to_path_buf(),
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!("the engine daemon exited at start: {st}"));
            }
            if Instant::now() > end {
                return Err(format!(
                    "the engine daemon did not open {} within 10 s",
                    socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(d)
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.socket);
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
