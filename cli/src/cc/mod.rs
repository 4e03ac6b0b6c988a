//! `weir cc`: list, show, check and run congestion-control policies.
//!
//! * `weir cc list` — every algorithm, one line each, with its citation.
//! * `weir cc show NAME` — its parameters: name, default, unit, range, meaning.
//! * `weir cc check FILE.toml` — parse a policy file (`[cc] algorithm = "…"` plus parameters by
//!   name) and print the effective configuration; unknown keys and out-of-range values are
//!   errors naming the key.
//! * `weir cc run --policy NAME|FILE.toml …` — run the policy on the model bottleneck of
//!   `weir_congestion::testing` and print Jain's index, utilisation and queue figures,
//!   optionally drawing an SVG chart and writing a CSV. An eBPF program (`FILE.o`) that faults
//!   at run time is reported (per hook, per flow, the first fault's message) and the command
//!   exits 1 unless `--allow-faults` (see `ebpf`).
//!
//! Contract: the algorithms come from one table, `weir_congestion::registry::BUILTINS`; every
//! command builds its text first (testable without a terminal) and prints it whole. Errors are
//! returned, never panicked, and name what was wrong.

mod config;
mod ebpf;
mod plot;
mod policy;
mod sim;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use policy::Policy;
use sim::RunArgs;
use weir_congestion::AlgorithmInfo;
use weir_congestion::registry::BUILTINS;
use weir_policy::faults::Faults;

/// Arguments of `weir cc`.
#[derive(Debug, Args)]
#[command(after_help = "Example: weir cc run --policy dcqcn --flows 8 --incast 16 --plot out.svg")]
pub(crate) struct CcArgs {
    #[command(subcommand)]
    command: CcCommand,
}

/// What `weir cc` can do.
#[derive(Debug, Subcommand)]
enum CcCommand {
    /// List the congestion-control algorithms, one line each with its citation.
    List,
    /// Show an algorithm's parameters: defaults, units, ranges and meaning.
    Show {
        /// Algorithm name, as `weir cc list` prints it.
        name: String,
    },
    /// Check a policy file (TOML with a [cc] table) and print the effective configuration.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Run a policy on a model bottleneck (N flows, one queue, ECN, INT) and summarise it.
    Run(Box<RunArgs>),
}

/// Run `weir cc`.
pub(crate) fn run(args: CcArgs) -> Result<(), Box<dyn std::error::Error>> {
    let text = match args.command {
        CcCommand::List => list(),
        CcCommand::Show { name } => show(&name)?,
        CcCommand::Check { file } => check(&file)?,
        CcCommand::Run(args) => {
            let ran = run_policy(&args)?;
            // The summary (and the files) first: they say what faulted, and where.
            print!("{}", ran.text);
            return match ran.fault {
                Some(e) => Err(e.into()),
                None => Ok(()),
            };
        }
    };
    print!("{text}");
    Ok(())
}

/// What `weir cc run` produced.
#[derive(Debug)]
struct Ran {
    /// The summary (and the files written).
    text: String,
    /// The error to exit with: the eBPF program faulted at run time (and `--allow-faults`
    /// was not given).
    fault: Option<String>,
}

/// `weir cc list`.
fn list() -> String {
    let width = BUILTINS.iter().map(|a| a.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for a in BUILTINS {
        let _ = writeln!(s, "{:width$}  {}  [{}]", a.name, a.summary, a.citation);
    }
    s
}

/// `weir cc show NAME`.
fn show(name: &str) -> Result<String, String> {
    let a = policy::find(name)?;
    let mut s = String::new();
    let _ = writeln!(s, "{}: {}", a.name, a.summary);
    let _ = writeln!(s, "source: {}", a.citation);
    s.push('\n');
    let rows: Vec<[String; 5]> = a
        .specs
        .iter()
        .zip(policy::defaults(a))
        .map(|(p, d)| {
            [
                p.name.to_string(),
                num(d),
                p.unit.as_str().to_string(),
                format!("[{}, {}]", num(p.min), num(p.max)),
                p.doc.to_string(),
            ]
        })
        .collect();
    table(
        &mut s,
        ["parameter", "default", "unit", "range", "meaning"],
        &rows,
    );
    Ok(s)
}

/// `weir cc check FILE`.
fn check(file: &Path) -> Result<String, String> {
    if file.extension().and_then(|e| e.to_str()) == Some("o") {
        return ebpf::check(file);
    }
    let policy = load(file, &[])?;
    let a = policy::find(policy.algorithm)?;
    let mut s = String::new();
    let _ = writeln!(s, "{}: ok, algorithm {}", file.display(), policy.algorithm);
    let _ = writeln!(s, "source: {}", a.citation);
    s.push('\n');
    s.push_str(&effective(a, &policy));
    Ok(s)
}

/// `weir cc run`.
fn run_policy(args: &RunArgs) -> Result<Ran, String> {
    let mut sets = Vec::new();
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv}: expected NAME=VALUE"))?;
        let v: f64 = match v.trim() {
            "true" => 1.0,
            "false" => 0.0,
            t => t
                .parse()
                .map_err(|_| format!("--set {kv}: `{t}` is not a number"))?,
        };
        sets.push((k.trim().to_string(), v));
    }
    let policy = load(Path::new(&args.policy), &sets)?;
    if policy.receiver_driven {
        return Err(format!(
            "{}: {} is receiver-driven (senders send only against the receiver's credit) and \
             this bottleneck model has no credit-granting receiver; run it through the \
             transport: `weir bench transport --cc {}`, or tests/tests/rccc.rs (16-to-1 incast)",
            args.policy,
            policy.algorithm.to_ascii_uppercase(),
            policy.algorithm
        ));
    }
    let out = sim::simulate(&policy, args)?;
    let mut s = out.summary;
    if let Some(path) = &args.plot {
        let title = format!("weir cc run: {} ({})", policy.algorithm, args.policy);
        let svg = plot::svg(&out.trace, &title)?;
        std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(s, "wrote {}", path.display());
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, out.trace.to_csv()).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(s, "wrote {}", path.display());
    }
    let fault = match out.faults {
        Some(f) if !args.allow_faults => fault_error(&args.policy, &f),
        _ => None,
    };
    Ok(Ran { text: s, fault })
}

/// The error `weir cc run` exits with when the policy's program faulted (`None`: it did not).
fn fault_error(policy: &str, f: &Faults) -> Option<String> {
    if f.faults == 0 {
        return None;
    }
    let first = f.first.as_ref().map_or_else(String::new, |x| {
        format!(
            "; first: f{}, {} event at {:.4} ms: {}",
            x.flow,
            x.hook,
            x.at.as_ps() as f64 / 1e9,
            x.message
        )
    });
    Some(format!(
        "{policy}: the policy program faulted {} times in {} runs{first} (summary above; \
         --allow-faults to exit 0 anyway)",
        f.faults, f.runs
    ))
}

/// The policy `spec` names: a TOML file (by extension or because it exists) or an algorithm
/// name with its defaults; `sets` are applied last.
fn load(spec: &Path, sets: &[(String, f64)]) -> Result<Policy, String> {
    let ext = spec.extension().and_then(|e| e.to_str());
    if ext == Some("o") {
        return ebpf::policy(spec, sets);
    }
    let (algo, mut overrides, origin) = if ext == Some("toml") || spec.is_file() {
        let (algo, o) = config::read(spec)?;
        (algo, o, spec.display().to_string())
    } else {
        let name = spec.to_string_lossy();
        (policy::find(&name)?, Vec::new(), "--set".to_string())
    };
    overrides.extend_from_slice(sets);
    Policy::configure(algo, &overrides).map_err(|e| format!("{origin}: {e}"))
}

/// The effective configuration, marking values that differ from the default.
fn effective(a: &AlgorithmInfo, p: &Policy) -> String {
    let rows: Vec<[String; 4]> = p
        .values
        .iter()
        .zip(policy::defaults(a))
        .map(|((spec, v), d)| {
            [
                spec.name.to_string(),
                num(*v),
                spec.unit.as_str().to_string(),
                if *v == d {
                    "default".to_string()
                } else {
                    format!("set (default {})", num(d))
                },
            ]
        })
        .collect();
    let mut s = String::new();
    table(&mut s, ["parameter", "value", "unit", ""], &rows);
    s
}

/// Appends a left-aligned text table; the last column is not padded.
fn table<const N: usize>(s: &mut String, head: [&str; N], rows: &[[String; N]]) {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:w$}  ", w = width[i]);
            }
        }
        let _ = writeln!(s, "{}", l.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// A parameter value as a person would write it.
fn num(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A fresh path in the temporary directory.
    fn temp(name: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("weir-cc-{}-{n}-{name}", std::process::id()))
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        try_run_args(extra).expect("valid arguments")
    }

    /// The arguments, or clap's error (out-of-range values are refused here).
    fn try_run_args(extra: &[&str]) -> Result<RunArgs, String> {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            run: RunArgs,
        }
        let mut argv = vec!["run"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv)
            .map(|w| w.run)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn list_has_one_line_per_algorithm_with_a_citation() {
        let text = list();
        assert_eq!(text.lines().count(), BUILTINS.len());
        let dcqcn = text
            .lines()
            .find(|l| l.starts_with("dcqcn"))
            .expect("listed");
        assert!(dcqcn.contains("SIGCOMM 2015"), "{dcqcn}");
    }

    #[test]
    fn show_prints_every_parameter() {
        let text = show("dcqcn").expect("known");
        for spec in policy::find("dcqcn").expect("known").specs {
            let row = text
                .lines()
                .find(|l| l.starts_with(spec.name))
                .unwrap_or_else(|| panic!("{} missing", spec.name));
            assert!(row.contains(spec.doc), "{row}");
        }
        assert!(
            text.contains("rpg_time_reset              300      us"),
            "{text}"
        );
        assert!(
            show("nope")
                .unwrap_err()
                .contains("unknown algorithm `nope`")
        );
    }

    #[test]
    fn check_prints_the_effective_configuration_or_names_the_bad_key() {
        let path = temp("ok.toml");
        std::fs::write(&path, "[cc]\nalgorithm = \"dcqcn\"\nrpg_time_reset = 55\n").expect("write");
        let text = check(&path).expect("valid");
        assert!(text.contains("ok, algorithm dcqcn"));
        let row = text
            .lines()
            .find(|l| l.starts_with("rpg_time_reset"))
            .expect("row");
        assert!(
            row.contains("55") && row.contains("set (default 300)"),
            "{row}"
        );
        std::fs::write(&path, "[cc]\nalgorithm = \"dcqcn\"\nrpg_ai_rate = 5000\n").expect("write");
        let e = check(&path).unwrap_err();
        assert!(e.contains("`rpg_ai_rate` = 5000 is out of range"), "{e}");
        std::fs::write(&path, "[cc]\nalgorithm = \"dcqcn\"\nbogus = 1\n").expect("write");
        let e = check(&path).unwrap_err();
        assert!(e.contains("unknown parameter `bogus` for dcqcn"), "{e}");
        let _ = std::fs::remove_file(&path);
        assert!(
            check(&temp("missing.toml"))
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn run_draws_an_svg_and_writes_a_csv() {
        let svg = temp("out.svg");
        let csv = temp("out.csv");
        let (svg_s, csv_s) = (svg.to_string_lossy(), csv.to_string_lossy());
        let args = run_args(&[
            "--policy",
            "dcqcn",
            "--flows",
            "3",
            "--incast",
            "4",
            "--duration-ms",
            "2",
            "--step",
            "1.5:50",
            "--plot",
            &svg_s,
            "--csv",
            &csv_s,
        ]);
        let text = run_policy(&args).expect("runs").text;
        assert!(text.contains("Jain's index"), "{text}");
        assert!(text.contains("incast at 0.67 ms"), "{text}");
        let drawn = std::fs::read_to_string(&svg).expect("svg written");
        assert!(
            drawn.starts_with("<svg"),
            "{}",
            &drawn[..80.min(drawn.len())]
        );
        // One line per flow in the goodput and rate panels, plus the queue.
        assert!(drawn.matches("<polyline").count() > 2 * 7);
        let rows = std::fs::read_to_string(&csv).expect("csv written");
        assert_eq!(rows.lines().count(), 1 + 200);
        let _ = std::fs::remove_file(&svg);
        let _ = std::fs::remove_file(&csv);
    }

    #[test]
    fn run_takes_a_policy_file_and_overrides() {
        let path = temp("fixed.toml");
        std::fs::write(&path, "[cc]\nalgorithm = \"fixed\"\nwindow = 65536\n").expect("write");
        let p = path.to_string_lossy();
        let args = run_args(&["--policy", &p, "--set", "rate=10", "--duration-ms", "1"]);
        let text = run_policy(&args).expect("runs").text;
        assert!(text.starts_with("policy fixed"), "{text}");
        let args = run_args(&["--policy", &p, "--set", "rate=-1"]);
        assert!(run_policy(&args).unwrap_err().contains("`rate`"));
        let args = run_args(&["--policy", "dcqcn", "--set", "rpg_gd"]);
        assert!(run_policy(&args).unwrap_err().contains("NAME=VALUE"));
        let _ = std::fs::remove_file(&path);
    }

    /// Compile an example program with clang, or `None` when clang is missing: the test is
    /// then reported skipped, with the install command (as the policy crate's tests do).
    fn example_object(name: &str) -> Option<PathBuf> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/cc/{name}.c"));
        let out = temp(&format!("{name}.o"));
        let status = match std::process::Command::new("clang")
            .args(["-O2", "-g0", "-target", "bpf", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .status()
        {
            Ok(status) => status,
            Err(e) => {
                weir_bench::report_skipped(
                    "weir-cli cc eBPF test",
                    &format!("clang not found ({e}); it compiles examples/cc/{name}.c"),
                    Some("apt-get install -y clang"),
                );
                return None;
            }
        };
        assert!(status.success(), "clang failed on {}", src.display());
        Some(out)
    }

    #[test]
    fn ebpf_objects_are_checked_and_run_like_their_native_twins() {
        let Some(obj) = example_object("swift") else {
            return;
        };
        let o = obj.to_string_lossy();
        let text = check(&obj).expect("verifies");
        assert!(
            text.contains("ok, eBPF program") && text.contains("base_target_ns"),
            "{text}"
        );
        // Same trajectory as the native Swift: the summaries match line for line (all but
        // the first, which names the policy).
        let summary = |p: &str| {
            let t = run_policy(&run_args(&[
                "--policy",
                p,
                "--flows",
                "4",
                "--duration-ms",
                "3",
            ]))
            .expect("runs")
            .text;
            // The program's run count is the eBPF run's own line.
            t.lines()
                .skip(1)
                .filter(|l| !l.starts_with("program: "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(summary(&o), summary("swift"));
        let ran = run_policy(&run_args(&["--policy", &o, "--duration-ms", "1"])).expect("runs");
        assert!(ran.fault.is_none(), "{ran:?}");
        assert!(ran.text.contains(" runs, no faults"), "{}", ran.text);
        // Parameters by declared name; unknown names and non-integers are refused.
        let args = run_args(&["--policy", &o, "--set", "hops=2", "--duration-ms", "1"]);
        assert!(run_policy(&args).is_ok());
        let args = run_args(&["--policy", &o, "--set", "hopz=2"]);
        assert!(run_policy(&args).unwrap_err().contains("hopz"));
        let args = run_args(&["--policy", &o, "--set", "hops=1.5"]);
        assert!(run_policy(&args).unwrap_err().contains("integers"));
        // Not a BPF object: refused with the reason.
        let junk = temp("junk.o");
        std::fs::write(&junk, b"not an ELF file").expect("write");
        assert!(check(&junk).unwrap_err().contains("refused"));
        let _ = std::fs::remove_file(&obj);
        let _ = std::fs::remove_file(&junk);
    }

    /// One eBPF instruction (`op`, registers, offset, immediate), little-endian.
    fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> Vec<u8> {
        let mut b = vec![op, dst | (src << 4)];
        b.extend_from_slice(&off.to_le_bytes());
        b.extend_from_slice(&imm.to_le_bytes());
        b
    }

    /// A verified program that runs at 1 Gbit/s but fails (returns 22) on every SENT event.
    fn faulting_on_sent() -> weir_policy::Program {
        use std::mem::offset_of;
        use weir_policy::abi::{Context, event};
        let off = |o: usize| i16::try_from(o).expect("offset");
        let code = [
            // r2 = ctx->event
            insn(0x61, 2, 1, off(offset_of!(Context, event)), 0),
            // if r2 == SENT goto fail
            insn(0x15, 2, 0, 3, event::SENT as i32),
            // ctx->out_rate_bps = 1e9; return 0
            insn(
                0x7a,
                1,
                0,
                off(offset_of!(Context, out_rate_bps)),
                1_000_000_000,
            ),
            insn(0xb7, 0, 0, 0, 0),
            insn(0x95, 0, 0, 0, 0),
            // fail: return 22
            insn(0xb7, 0, 0, 0, 22),
            insn(0x95, 0, 0, 0, 0),
        ]
        .concat();
        weir_policy::Program::from_bytecode(&code, &weir_policy::VerifierConfig::default())
            .expect("verifies")
    }

    /// Issue 13: `weir cc run` said nothing when the policy's program faulted at run time (the
    /// flows kept their last good limits, so the figures looked plausible). Now the faults
    /// are counted per hook and per flow, the first one's message is shown under the summary's
    /// first line, and the command exits with an error (unless --allow-faults).
    #[test]
    fn a_faulting_program_is_reported_per_hook_and_fails_the_run() {
        let program = faulting_on_sent();
        let params = weir_policy::ParamHandle::new(&[]).expect("params");
        let policy = ebpf::program_policy(program, params, Vec::new());
        let args = run_args(&["--flows", "3", "--duration-ms", "1"]);
        let out = sim::simulate(&policy, &args).expect("runs");
        let f = out.faults.expect("an eBPF policy reports its faults");
        let [init, sent, feedback, timeout] = f.by_hook;
        assert_eq!((init, feedback, timeout), (0, 0, 0), "{f:?}");
        assert!(sent > 0 && f.faults == sent, "{f:?}");
        // Every packet sent ran the program and faulted; INIT and feedback did not.
        assert!(f.runs > f.faults, "{f:?}");
        assert_eq!(f.by_flow.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(f.by_flow.values().sum::<u64>(), f.faults);
        let first = f.first.clone().expect("a first fault");
        assert_eq!(first.hook, "sent");
        assert_eq!(first.message, "the program returned 22");
        let lines: Vec<&str> = out.summary.lines().collect();
        assert!(lines[0].starts_with("policy ebpf"), "{}", out.summary);
        assert!(
            lines[1].starts_with(&format!(
                "POLICY FAULTED: {} of {} program runs",
                f.faults, f.runs
            )),
            "{}",
            out.summary
        );
        assert_eq!(
            lines[2],
            format!("  faults by hook  init 0, sent {sent}, feedback 0, timeout 0")
        );
        assert!(
            lines[3].starts_with("  faults by flow  f0 ")
                && lines[3].ends_with("(3 of 3 flows faulted)"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("  first fault     f")
                && lines[4].ends_with(": the program returned 22"),
            "{}",
            lines[4]
        );
        let e = fault_error("x.o", &f).expect("an error to exit with");
        assert!(
            e.starts_with(&format!(
                "x.o: the policy program faulted {} times",
                f.faults
            )),
            "{e}"
        );
        assert!(
            e.contains("sent event at") && e.contains("the program returned 22"),
            "{e}"
        );
        // Nothing faulted: no error, one line saying so.
        let quiet = Faults {
            runs: 10,
            ..Faults::default()
        };
        assert_eq!(fault_error("x.o", &quiet), None);
        assert_eq!(sim::fault_lines(&quiet, 3), "program: 10 runs, no faults\n");
    }

    #[test]
    fn bad_run_arguments_are_refused() {
        for (flags, want) in [
            (&["--link-gbps", "0"][..], "--link-gbps"),
            (&["--duration-ms=-1"][..], "--duration-ms"),
            (&["--step", "5"][..], "MS:GBPS"),
            (&["--step", "50:10"][..], "after the end"),
            (&["--loss", "2"][..], "--loss"),
            (&["--int", "all"][..], "--int all"),
            (&["--flows", "0"][..], "no flows"),
            (&["--kmin-kb", "500"][..], "--kmax-kb"),
            (&["--sample-us", "0"][..], "--sample-us"),
            (&["--policy", "cubic"][..], "unknown algorithm"),
            (&["--policy", "rccc"][..], "receiver-driven"),
            (
                &["--policy", "hpcc", "--int", "off"][..],
                "needs in-band network telemetry",
            ),
        ] {
            // Single values out of range are refused by the parser, combinations by the run.
            let e = match try_run_args(flags) {
                Err(e) => e,
                Ok(a) => run_policy(&a).unwrap_err(),
            };
            assert!(e.contains(want), "{flags:?}: {e}");
        }
    }

    #[test]
    fn numbers_print_plainly() {
        assert_eq!(num(32767.0), "32767");
        assert_eq!(num(0.005), "0.005");
        assert_eq!(num(1e12), "1000000000000");
    }
}
