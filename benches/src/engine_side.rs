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

    /// What a row of `mode` runs: TCP rows run no engine of ours (`Host`, i.e. none).
    pub fn for_mode(self, mode: crate::Mode) -> EngineKind {
        if mode == crate::Mode::Tcp {
            EngineKind::Host
        } else {
            self
        }
    }

    /// A peer's placement: for `daemon`, the daemon of its side at `sockets` (the sender's,
    /// the receiver's).
    pub fn placement(self, role: crate::peer::Role, sockets: &(PathBuf, PathBuf)) -> Placement {
        match self {
            EngineKind::Host => Placement::Host,
            EngineKind::Inproc => Placement::Inproc,
            EngineKind::Daemon => Placement::Daemon(match role {
                crate::peer::Role::Sender => sockets.0.clone(),
                crate::peer::Role::Receiver => sockets.1.clone(),
            }),
        }
    }

    /// A row's engine label: `None` for each peer's own `Host`.
    pub fn label(self) -> Option<String> {
        (self != EngineKind::Host).then(|| self.name().to_string())
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

/// The sockets of the sender's and the receiver's daemon for a bench run by this process.
pub fn daemon_sockets() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    (
        dir.join(format!("weir-bench-{pid}-tx.sock")),
        dir.join(format!("weir-bench-{pid}-rx.sock")),
    )
}

/// How a bench's daemons run.
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonSetup<'a> {
    /// Engine loops (`--loops`; `None`: the daemon's default).
    pub loops: Option<usize>,
    /// The go-back-N baseline transport.
    pub go_back_n: bool,
    /// Congestion control (`--cc`).
    pub cc: Option<&'a str>,
    /// Loss injected on the receive path (with [`with_daemons`]: the receiver's daemon only).
    pub loss: f64,
    /// Seed of that loss.
    pub seed: u64,
}

impl DaemonProcess {
    /// Start `program engine …` serving `socket` as `setup` says, printing no counters.
    pub fn start(
        program: &std::path::Path,
        socket: &std::path::Path,
        setup: &DaemonSetup<'_>,
    ) -> Result<DaemonProcess, String> {
        let mut args: Vec<String> = vec![
            "engine".into(),
            "--socket".into(),
            socket.display().to_string(),
            "--stats-every".into(),
            "0".into(),
        ];
        if let Some(n) = setup.loops {
            args.extend(["--loops".into(), n.to_string()]);
        }
        if setup.go_back_n {
            args.push("--go-back-n".into());
        }
        if let Some(cc) = setup.cc {
            args.extend(["--cc".into(), cc.to_string()]);
        }
        if setup.loss > 0.0 {
            args.extend([
                "--fault-rx".into(),
                format!("drop={},seed={}", setup.loss, setup.seed),
            ]);
        }
        DaemonProcess::spawn(program, &args, socket)
    }
}

/// Run `f` with a daemon per peer started (`program engine …` at `sockets`: the sender's,
/// then the receiver's, whose receive path gets `setup.loss`) when `engine` is `daemon`,
/// stopping them after; otherwise just `f`.
pub fn with_daemons<R>(
    engine: EngineKind,
    program: &std::path::Path,
    sockets: &(PathBuf, PathBuf),
    setup: DaemonSetup<'_>,
    f: impl FnOnce() -> R,
) -> Result<R, String> {
    if engine != EngineKind::Daemon {
        return Ok(f());
    }
    let one_loop = DaemonSetup {
        loops: Some(1),
        ..setup
    };
    let _sender = DaemonProcess::start(
        program,
        &sockets.0,
        &DaemonSetup {
            loss: 0.0,
            ..one_loop
        },
    )?;
    let _receiver = DaemonProcess::start(program, &sockets.1, &one_loop)?;
    Ok(f())
}
