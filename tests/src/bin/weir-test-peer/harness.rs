//! The parent's side of `weir-test-peer`'s line protocol (see `main.rs`): spawn a peer, read its
//! stdout lines with timeouts, talk to it on stdin, kill it. Not part of the binary; the test
//! files include it with `#[path = "../src/bin/weir-test-peer/harness.rs"] mod harness;`
//! (`tests/src/lib.rs` belongs to the in-memory harness).
//!
//! A [`Peer`] never blocks without a timeout, keeps the child's stderr for failure messages, and
//! kills and reaps the child when dropped, so a failing test leaves no process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the peer binary (built by cargo for the tests of this package).
pub(crate) const PEER_BIN: &str = env!("CARGO_BIN_EXE_weir-test-peer");

/// A running peer process.
#[derive(Debug)]
pub(crate) struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    /// `weir-test-peer ARGS`.
    pub(crate) fn spawn(name: &str, args: &[String]) -> Peer {
        let mut cmd = Command::new(PEER_BIN);
        cmd.args(args);
        Peer::spawn_cmd(name, cmd)
    }

    /// Any command that ends up running `weir-test-peer` (e.g. under `ip netns exec`).
    pub(crate) fn spawn_cmd(name: &str, mut cmd: Command) -> Peer {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        Peer {
            name: name.to_string(),
            child,
            stdin,
            lines,
            stderr,
        }
    }

    /// The OS process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the peer wrote to stderr so far (at most 20).
    pub(crate) fn stderr(&self) -> String {
        let all = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<&str> = all.lines().collect();
        let skip = lines.len().saturating_sub(20);
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

    /// The next stdout line.
    pub(crate) fn line(&mut self, timeout: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "{}: no output line within {timeout:?}; stderr:\n{}",
                self.name,
                self.stderr()
            )),
            Err(RecvTimeoutError::Disconnected) => Err(format!(
                "{}: stdout closed (exit status {:?}); stderr:\n{}",
                self.name,
                self.child.try_wait().ok().flatten(),
                self.stderr()
            )),
        }
    }

    /// The rest of the next line that starts with `prefix`; a JSON line (the peer reporting a
    /// failure) or the end of output is an error carrying what the peer said.
    pub(crate) fn expect(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.line(deadline.saturating_duration_since(Instant::now()))?;
            if let Some(rest) = l.strip_prefix(prefix) {
                return Ok(rest.trim().to_string());
            }
            if l.starts_with('{') {
                return Err(format!(
                    "{}: expected `{prefix}...`, the peer reported {l}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ));
            }
        }
    }

    /// The next JSON line (the peer's result).
    pub(crate) fn result(&mut self, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.line(deadline.saturating_duration_since(Instant::now()))?;
            if l.starts_with('{') {
                return serde_json::from_str(&l)
                    .map_err(|e| format!("{}: bad result line {l:?}: {e}", self.name));
            }
        }
    }

    /// Write one line to the peer's stdin.
    pub(crate) fn send(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            // A peer that already exited shows up in its result or exit status instead.
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// `kill -9` the peer, and reap it.
    pub(crate) fn kill9(&mut self) {
        // `Child::kill` sends SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Tell the peer to exit and wait for it (killed after `timeout`).
    pub(crate) fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.send("EXIT");
        self.stdin = None;
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    self.kill9();
                    return None;
                }
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// Run `f` on a thread and fail the test if it has not returned within `limit` (a hang, not a
/// slow run: limits are generous). A panic in `f` is re-raised here.
pub(crate) fn bounded<R: Send + 'static>(
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

/// Run `f` while holding a lock shared by the tests of one file, so the multi-process runs do
/// not compete for the machine's (possibly two) cores.
pub(crate) fn serial<R>(lock: &Mutex<()>, f: impl FnOnce() -> R) -> R {
    let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

/// A JSON number field as u64 (0 when absent), for reports.
pub(crate) fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .or_else(|| cur.as_f64().map(|f| f as u64))
        .unwrap_or(0)
}
