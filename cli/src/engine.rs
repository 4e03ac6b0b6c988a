//! `weir engine`: the engine daemon (docs/engine.md) — one engine per host that local
//! processes attach to through its Unix socket, rings and memory in shared memfds. Runs until
//! SIGINT or SIGTERM, printing its counters every `--stats-every` seconds and at exit.

use std::net::IpAddr;
use std::path::PathBuf;

use weir_datapath::HostConfig;
use weir_firmware::EngineConfig;
use weir_firmware::daemon::{self, Daemon};

/// `weir engine` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct EngineArgs {
    /// Unix socket clients attach to [default: $XDG_RUNTIME_DIR/weir-engine.sock, else
    /// /tmp/weir-engine-<uid>.sock]
    #[arg(long)]
    socket: Option<PathBuf>,
    /// IP address the datapath binds (peers reach the engine there)
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// UDP port of the datapath (0: any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Congestion control: a built-in name or a TOML file with a [cc] table
    #[arg(long)]
    cc: Option<String>,
    /// The RoCEv2-like baseline transport (one path, go-back-N) instead of Weir's
    #[arg(long)]
    go_back_n: bool,
    /// Impair received datagrams (weir_datapath::FaultConfig syntax, e.g. drop=0.01,seed=7)
    #[arg(long, value_name = "SPEC")]
    fault_rx: Option<String>,
    /// Engine loops, each with its own UDP port and a share of the clients (as a NIC's
    /// queues, each served by a core) [default: the CPUs, at most 4]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    loops: Option<u16>,
    /// Print the counters every this many seconds (0: only at exit)
    #[arg(long, default_value_t = 10)]
    stats_every: u64,
}

/// Block SIGINT and SIGTERM in this thread (and the threads it starts), so `wait_signal`
/// can take them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is valid input to sigemptyset, which initialises it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait up to `secs` for SIGINT/SIGTERM; true when one came.
fn wait_signal(set: &libc::sigset_t, secs: u64) -> bool {
    let ts = libc::timespec {
        tv_sec: secs.clamp(1, 3600) as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: valid set and timespec; no siginfo wanted.
    unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) > 0 }
}

pub(crate) fn run(args: EngineArgs) -> Result<(), String> {
    let set = block_signals();
    let path = args.socket.unwrap_or_else(daemon::default_socket);
    let mut cfg = HostConfig::default();
    cfg.udp.bind = args.bind;
    cfg.udp.port = args.port;
    if args.go_back_n {
        cfg.transport = weir_transport::Config::go_back_n();
    }
    if let Some(spec) = &args.fault_rx {
        cfg.fault_rx = weir_datapath::FaultConfig::parse(spec).map_err(|e| e.to_string())?;
    }
    if let Some(cc) = &args.cc {
        cfg.transport.cc = weir_bench::weir_side::load_cc(cc).map_err(|e| e.to_string())?;
    }
    let loops = args.loops.map_or_else(daemon::default_loops, usize::from);
    let d = Daemon::with_loops(&path, cfg, EngineConfig::default(), loops)
        .map_err(|e| e.to_string())?;
    let addrs: Vec<String> = d.loops().map(|e| e.local_addr().to_string()).collect();
    println!(
        "weir engine: {loops} loop(s) at {}, clients attach at {}",
        addrs.join(", "),
        path.display()
    );
    let print = |d: &Daemon| match d.stats() {
        Ok(t) => println!("weir engine: {t}"),
        Err(e) => eprintln!("weir engine: {e}"),
    };
    let every = if args.stats_every == 0 {
        3600
    } else {
        args.stats_every
    };
    loop {
        if wait_signal(&set, every) {
            break;
        }
        if args.stats_every > 0 {
            print(&d);
        }
    }
    print(&d);
    Ok(())
}
