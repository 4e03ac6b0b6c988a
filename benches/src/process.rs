//! The process-peer harness: a child process driven in lines over its stdin and stdout.
//!
//! Every multi-process run in the workspace goes through [`Peer`]: the benches' receiver and
//! sender ([`crate::peer`]), the ABI tests' plugin children (`benches/tests/abi.rs`) and the
//! `weir-test-peer` processes of `weir-tests` (`loopback_udp`, `dead_peer`, `netns_loss`).
//!
//! A [`Peer`]
//!
//! * never blocks without a timeout: every read ([`Peer::line`], [`Peer::expect`],
//!   [`Peer::json`]) and every wait for the exit ([`Peer::wait`], [`Peer::finish`]) takes one;
//! * keeps the child's stderr (its last lines end every [`PeerError`]'s message), and can echo
//!   it to ours as it comes ([`Peer::spawn_echoing`], what the benches do);
//! * kills and reaps the child when dropped, so a failing run leaves no process behind. It
//!   only ever kills the child it spawned, by handle.
//!
//! [`bounded`], [`serial`] and [`json_u64`] are the small helpers the multi-process tests
//! share.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

/// How much of a peer's stderr is kept (the newest bytes).
const STDERR_KEEP: usize = 64 << 10;
/// How many of the kept lines a failure message quotes.
const STDERR_LINES: usize = 20;

/// A running child process.
#[derive(Debug)]
pub struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
    /// The thread copying the child's stderr into `log`; it ends when the child's stderr
    /// closes.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    echo: bool,
}

/// What went wrong while waiting for a peer's line.
#[derive(Debug)]
pub enum PeerErrorKind {
    /// Nothing (that fits) within this time.
    Timeout(Duration),
    /// Its stdout closed: the peer exited, with this status if it was reaped in time.
    Exited(Option<ExitStatus>),
    /// [`Peer::expect`]: a JSON line (the peer reporting a failure) came before the prefix.
    Unexpected {
        /// The prefix waited for.
        wanted: String,
        /// The line that came instead.
        line: String,
    },
    /// [`Peer::json`]: a line that starts like JSON but is not the type expected.
    BadJson {
        /// The line.
        line: String,
        /// The parser's complaint.
        error: String,
    },
}

/// A failed wait for a peer's line: its name, what happened and the end of its stderr.
#[derive(Debug)]
pub struct PeerError {
    /// The peer's name (as given to [`Peer::spawn`]).
    pub name: String,
    /// What happened.
    pub kind: PeerErrorKind,
    /// The last lines of the peer's stderr at the time.
    pub stderr: String,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match &self.kind {
            PeerErrorKind::Timeout(t) => write!(f, "{name}: no output line within {t:?}")?,
            PeerErrorKind::Exited(s) => write!(f, "{name}: stdout closed (exit status {s:?})")?,
            PeerErrorKind::Unexpected { wanted, line } => {
                write!(
                    f,
                    "{name}: expected `{wanted}...`, the peer reported {line}"
                )?;
            }
            PeerErrorKind::BadJson { line, error } => {
                write!(f, "{name}: bad result line {line:?}: {error}")?;
            }
        }
        write!(f, "; stderr:\n{}", self.stderr)
    }
}

impl std::error::Error for PeerError {}

impl Peer {
    /// Spawn `cmd` with piped stdin, stdout and stderr; its stderr is kept, not shown.
    pub fn spawn(name: &str, cmd: Command) -> io::Result<Peer> {
        Peer::start(name, cmd, false)
    }

    /// Like [`Peer::spawn`], but the peer's stderr is also copied to ours as it comes (and
    /// stdout lines that [`Peer::json`] skips are shown there too).
    pub fn spawn_echoing(name: &str, cmd: Command) -> io::Result<Peer> {
        Peer::start(name, cmd, true)
    }

    fn start(name: &str, mut cmd: Command, echo: bool) -> io::Result<Peer> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: cannot spawn {cmd:?}: {e}")))?;
        let stdin = child.stdin.take();
        let (tx, lines) = channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr_reader = None;
        if let Some(mut pipe) = child.stderr.take() {
            let sink = log.clone();
            stderr_reader = Some(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if echo {
                        let _ = io::stderr().write_all(&buf[..n]);
                    }
                    keep(&sink, &String::from_utf8_lossy(&buf[..n]));
                }
            }));
        }
        Ok(Peer {
            name: name.to_string(),
            child,
            stdin,
            lines,
            log,
            stderr_reader,
            echo,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the peer wrote to stderr so far (at most 20).
    pub fn stderr(&self) -> String {
        let all = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<&str> = all.lines().collect();
        let skip = lines.len().saturating_sub(STDERR_LINES);
        let mut out = String::new();
        if skip > 0 {
            out.push_str(&format!("[{skip} earlier lines]\n"));
        }
        for l in &lines[skip..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    fn error(&mut self, kind: PeerErrorKind) -> PeerError {
        PeerError {
            name: self.name.clone(),
            kind,
            stderr: self.stderr(),
        }
    }

    /// Wait (at most `limit`) for the stderr copier to reach the end of the child's stderr,
    /// so that [`Peer::stderr`] holds all of it. Its stderr closes when it exits (unless a
    /// child of its own keeps the pipe open: then this gives up after `limit`).
    fn drain_stderr(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Some(t) = &self.stderr_reader {
            if t.is_finished() {
                if let Some(t) = self.stderr_reader.take() {
                    let _ = t.join();
                }
                return;
            }
            if Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The next stdout line.
    pub fn line(&mut self, timeout: Duration) -> Result<String, PeerError> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(self.error(PeerErrorKind::Timeout(timeout))),
            Err(RecvTimeoutError::Disconnected) => {
                // Stdout closes as the process exits; give the exit a moment to be reaped.
                let status = self.wait(Duration::from_secs(1));
                // Everything the peer wrote to stderr before it exited belongs in the error.
                self.drain_stderr(Duration::from_secs(1));
                Err(self.error(PeerErrorKind::Exited(status)))
            }
        }
    }

    /// The rest (trimmed) of the next line that starts with `prefix`; other lines are skipped,
    /// but a JSON line (a peer reporting a failure) or the end of output is an error carrying
    /// what the peer said.
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> Result<String, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.line_until(deadline, timeout)?;
            if let Some(rest) = l.strip_prefix(prefix) {
                return Ok(rest.trim().to_string());
            }
            if l.starts_with('{') {
                return Err(self.error(PeerErrorKind::Unexpected {
                    wanted: prefix.to_string(),
                    line: l,
                }));
            }
        }
    }

    /// The next line that starts with `{`, parsed as a `T`. Lines before it are skipped (kept
    /// with the stderr, and shown when echoing).
    pub fn json<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.line_until(deadline, timeout)?;
            if l.starts_with('{') {
                return serde_json::from_str(&l).map_err(|e| {
                    self.error(PeerErrorKind::BadJson {
                        line: l,
                        error: e.to_string(),
                    })
                });
            }
            if self.echo {
                eprintln!("{}: said: {l}", self.name);
            }
            keep(&self.log, &format!("(stdout) {l}\n"));
        }
    }

    /// [`Peer::line`] until `deadline`; a timeout reports the whole `timeout`.
    fn line_until(&mut self, deadline: Instant, timeout: Duration) -> Result<String, PeerError> {
        self.line(deadline.saturating_duration_since(Instant::now()))
            .map_err(|mut e| {
                if let PeerErrorKind::Timeout(t) = &mut e.kind {
                    *t = timeout;
                }
                e
            })
    }

    /// Write one line to the peer's stdin. A peer that has exited (or whose stdin is closed)
    /// is not an error here: that shows up in its output or its exit status instead.
    pub fn send(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// Close the peer's stdin (it reads end-of-file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait up to `timeout` for the peer to exit; `None` if it still runs (it is left running).
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => return None,
            }
        }
    }

    /// Close the peer's stdin and give it `timeout` to exit; then kill it. The exit status,
    /// `None` when it had to be killed.
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.close_stdin();
        let status = self.wait(timeout);
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// `SIGKILL` the peer (if it still runs) and reap it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Append to a peer's kept log, dropping the oldest bytes beyond [`STDERR_KEEP`].
fn keep(log: &Mutex<String>, text: &str) {
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    log.push_str(text);
    if log.len() > 2 * STDERR_KEEP {
        let mut cut = log.len() - STDERR_KEEP;
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        log.drain(..cut);
    }
}

/// Run `f` on a thread and panic if it has not returned within `limit` (a hang, not a slow
/// run: limits are generous). A panic in `f` is re-raised here.
pub fn bounded<R: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = channel();
    let handle = std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let r = f();
            let _ = tx.send(());
            r
        })
        .expect("spawn the bounded thread");
    match rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?} (hang)"),
    }
}

/// Run `f` while holding `lock` (poisoning ignored), so that multi-process runs sharing it do
/// not compete for the machine's cores.
pub fn serial<R>(lock: &Mutex<()>, f: impl FnOnce() -> R) -> R {
    let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

/// A number in a peer's JSON result, by path, as `u64` (0 when absent).
pub fn json_u64(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .or_else(|| cur.as_f64().map(|f| f as u64))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn lines_prefixes_json_and_exit() {
        let mut p = Peer::spawn(
            "sh",
            sh("echo hello; echo >&2 oops; read x; echo \"ADDR $x\"; echo '{\"a\":1}'; exit 3"),
        )
        .expect("spawn");
        let t = Duration::from_secs(10);
        assert_eq!(p.line(t).expect("line"), "hello");
        p.send("1.2.3.4:5");
        assert_eq!(p.expect("ADDR ", t).expect("addr"), "1.2.3.4:5");
        let v: serde_json::Value = p.json(t).expect("json");
        assert_eq!(json_u64(&v, &["a"]), 1);
        let e = p.line(t).expect_err("closed");
        assert!(
            matches!(e.kind, PeerErrorKind::Exited(Some(s)) if s.code() == Some(3)),
            "{e}"
        );
        assert!(e.to_string().contains("oops"), "{e}");
    }

    #[test]
    fn timeouts_and_kill_on_drop() {
        let mut p = Peer::spawn("sleeper", sh("sleep 30")).expect("spawn");
        let e = p.line(Duration::from_millis(50)).expect_err("timeout");
        assert!(matches!(e.kind, PeerErrorKind::Timeout(_)), "{e}");
        assert!(p.wait(Duration::from_millis(20)).is_none());
        let pid = p.pid();
        drop(p);
        // Reaped: no such process (or, rarely, a reused pid that is not a zombie of ours).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains(" Z "), "{stat}");
    }

    #[test]
    fn a_json_line_before_the_prefix_is_an_error() {
        let mut p = Peer::spawn("sh", sh("echo '{\"ok\":false}'; sleep 5")).expect("spawn");
        let e = p
            .expect("READY", Duration::from_secs(10))
            .expect_err("unexpected");
        assert!(matches!(e.kind, PeerErrorKind::Unexpected { .. }), "{e}");
        assert!(p.finish(Duration::from_millis(10)).is_none());
    }

    #[test]
    fn bounded_returns_and_reraises() {
        assert_eq!(bounded("ok", Duration::from_secs(5), || 7), 7);
        let r = std::panic::catch_unwind(|| bounded("boom", Duration::from_secs(5), || panic!()));
        assert!(r.is_err());
    }
}
