//! Configuration from `WEIR_*` environment variables (read once per library load) and device
//! discovery from `getifaddrs` and sysfs.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WEIR_IFNAME` | interfaces to use, comma list (those with IPv4), one device each | every up non-loopback interface with IPv4, else `lo` |
//! | `WEIR_MODE` | `weir` (multipath, selective) or `gbn` (RoCEv2-like go-back-N baseline) | `weir` |
//! | `WEIR_CC` | congestion control: `fixed` (a window of the line rate × 40 µs: 500 KB at 100 Gb/s), `dcqcn`, `timely`, `swift`, `hpcc`, `nscc` or `rccc` (published defaults), or the path of a TOML file with a `[cc]` table | `fixed` |
//! | `WEIR_PATHS` | entropy values (paths) per connection | transport default (8) |
//! | `WEIR_MAX_PAYLOAD` | payload bytes per packet | interface MTU − 28 − 128 (header allowance), capped at 8192 |
//! | `WEIR_RTO_MS` | minimum (and initial, if larger) retransmission timeout | transport default |
//! | `WEIR_STREAM_REGION` | registered regions of this many bytes or more receive payload past the CPU caches (non-temporal stores; 0: never; docs/transport.md, "Placement past the caches") | transport default (33554432) |
//! | `WEIR_LOSS` | receive-side injected loss probability (testing) | 0 |
//! | `WEIR_LATENCY_US` | one-way latency reported to NCCL (`latency`), µs | 10 (half the measured 8-byte round trip) |
//! | `WEIR_DEBUG` | stderr level without an NCCL logger: 0 none … 5 trace | 2 (warnings) |
//! | `WEIR_ENGINE` | where the engine runs: `host` (a thread of this process), `inproc` (a firmware engine thread, reached through descriptor rings) or `daemon` / `daemon:<socket>` (a `weir engine` daemon shared by the host's processes; its own command line sets its transport, so `WEIR_MODE`, `WEIR_CC`, `WEIR_PATHS`, `WEIR_MAX_PAYLOAD`, `WEIR_RTO_MS`, `WEIR_STREAM_REGION` and `WEIR_LOSS` do not apply) | `host` |
//!
//! One device per chosen interface; names are `weir-<ifname>` (unique: the topology key).

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr};

/// Plugin configuration.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) ifname: Option<String>,
    pub(crate) go_back_n: bool,
    /// Congestion control (`WEIR_CC`: a built-in's name, or a TOML file with a `[cc]` table),
    /// or why it could not be read (`init` then fails with that message).
    pub(crate) cc: Result<weir_congestion::CcConfig, String>,
    pub(crate) paths: Option<u16>,
    pub(crate) max_payload: Option<u32>,
    pub(crate) rto_ms: Option<u64>,
    /// `WEIR_STREAM_REGION`: `Config::stream_region_bytes` (`None`: the transport's).
    pub(crate) stream_region: Option<u64>,
    pub(crate) loss: f64,
    /// One-way latency reported in the properties, µs.
    pub(crate) latency_us: f32,
    pub(crate) debug: u32,
    /// Where the engine runs (`WEIR_ENGINE`), or why it could not be read (`init` fails).
    pub(crate) engine: Result<weir_firmware::net::Placement, String>,
}

/// Default `latency` property: half of the 8-byte round trip `weir bench transport` measured
/// through the same engine and UDP datapath (19.5 µs median on loopback, BENCHMARKS.md).
/// NCCL adds it to its per-hop latency model; the network's own latency comes on top on a real
/// fabric, so sites set `WEIR_LATENCY_US` to their measured figure.
pub(crate) const DEFAULT_LATENCY_US: f32 = 10.0;

impl Config {
    /// Read the `WEIR_*` variables.
    pub(crate) fn from_env() -> Config {
        Config::from_vars(&|name| std::env::var(name).ok())
    }

    /// The configuration from variables looked up with `get` (the environment; a table in
    /// tests). A value that does not parse, or parses out of range, is ignored with a
    /// warning that names the variable and what it must be.
    pub(crate) fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Config {
        let var = |name: &str| get(name);
        // A number that parses but is out of range would otherwise be used (a negative
        // latency) or dropped in silence (a NaN loss probability).
        fn ranged<T: std::str::FromStr + std::fmt::Display>(
            get: &dyn Fn(&str) -> Option<String>,
            name: &str,
            ok: impl Fn(&T) -> bool,
            range: &str,
        ) -> Option<T> {
            let v = get(name)?;
            let Ok(x) = v.trim().parse::<T>() else {
                crate::log::warn(&format!("ignoring {name}={v}: not a valid value"));
                return None;
            };
            if ok(&x) {
                Some(x)
            } else {
                crate::log::warn(&format!("ignoring {name}={v}: must be {range}"));
                None
            }
        }
        let word = |name: &str, choices: &[&str]| -> Option<String> {
            let v = var(name)?.trim().to_ascii_lowercase();
            if choices.contains(&v.as_str()) {
                Some(v)
            } else {
                crate::log::warn(&format!("ignoring {name}={v}: expected one of {choices:?}"));
                None
            }
        };
        Config {
            ifname: var("WEIR_IFNAME").filter(|s| !s.is_empty()),
            go_back_n: word("WEIR_MODE", &["weir", "gbn"]).is_some_and(|m| m == "gbn"),
            cc: match var("WEIR_CC") {
                None => Ok(weir_congestion::CcConfig::default()),
                Some(v) => cc_from(v.trim()),
            },
            paths: ranged(get, "WEIR_PATHS", |&p: &u16| p >= 1, "at least 1"),
            max_payload: ranged(get, "WEIR_MAX_PAYLOAD", |&m: &u32| m >= 1, "at least 1"),
            rto_ms: ranged(get, "WEIR_RTO_MS", |&r: &u64| r >= 1, "at least 1"),
            stream_region: ranged(get, "WEIR_STREAM_REGION", |_: &u64| true, "a byte count"),
            loss: ranged(
                get,
                "WEIR_LOSS",
                |l: &f64| (0.0..=1.0).contains(l),
                "a probability within 0..=1",
            )
            .unwrap_or(0.0),
            latency_us: ranged(
                get,
                "WEIR_LATENCY_US",
                |l: &f32| (0.0..=1e6).contains(l),
                "within 0..=1000000",
            )
            .unwrap_or(DEFAULT_LATENCY_US),
            debug: ranged(get, "WEIR_DEBUG", |&d: &u32| d <= 5, "within 0..=5").unwrap_or(2),
            engine: match var("WEIR_ENGINE") {
                None => Ok(weir_firmware::net::Placement::Host),
                Some(v) => weir_firmware::net::Placement::parse(&v)
                    .map_err(|e| format!("WEIR_ENGINE={v}: {e}")),
            },
        }
    }
}

/// `WEIR_CC`: a built-in's name (published defaults) or the path of a TOML file.
fn cc_from(v: &str) -> Result<weir_congestion::CcConfig, String> {
    weir_congestion::toml_file::load(v, |p| std::fs::read_to_string(p).map_err(|e| e.to_string()))
        .map_err(|e| format!("WEIR_CC={v}: {e}"))
}

/// One network device as NCCL sees it.
#[derive(Debug)]
pub(crate) struct Device {
    /// Unique name (the topology key).
    pub(crate) name: CString,
    /// sysfs realpath of the PCI device, when there is one.
    pub(crate) pci_path: Option<CString>,
    /// Interface name.
    pub(crate) ifname: String,
    /// Address to bind to.
    pub(crate) addr: IpAddr,
    /// Mbps.
    pub(crate) speed: i32,
    /// Interface MTU.
    pub(crate) mtu: u32,
}

/// Find the devices to expose: every interface named in `WEIR_IFNAME` (comma list, in that
/// order) that has an IPv4 address; without it, every up non-loopback interface with IPv4,
/// or `lo` when there is none.
pub(crate) fn discover(cfg: &Config) -> Vec<Device> {
    let ifs = ipv4_interfaces();
    let mut picked: Vec<(String, Ipv4Addr)> = Vec::new();
    let add = |picked: &mut Vec<(String, Ipv4Addr)>, n: &str, a: Ipv4Addr| {
        if !picked.iter().any(|(p, _)| p == n) {
            picked.push((n.to_string(), a));
        }
    };
    match &cfg.ifname {
        Some(list) => {
            for want in list.split(',').map(str::trim) {
                if let Some((n, a, _)) = ifs.iter().find(|(n, _, _)| n == want) {
                    add(&mut picked, n, *a);
                }
            }
        }
        None => {
            for (n, a, up) in &ifs {
                if *up && !a.is_loopback() {
                    add(&mut picked, n, *a);
                }
            }
            if picked.is_empty() {
                let lo = ifs.iter().find(|(_, a, _)| a.is_loopback());
                add(
                    &mut picked,
                    lo.map_or("lo", |l| l.0.as_str()),
                    Ipv4Addr::LOCALHOST,
                );
            }
        }
    }
    picked
        .into_iter()
        .map(|(ifname, addr)| device(ifname, IpAddr::V4(addr)))
        .collect()
}

fn device(ifname: String, addr: IpAddr) -> Device {
    let sys = format!("/sys/class/net/{ifname}");
    let pci_path = std::fs::canonicalize(format!("{sys}/device"))
        .ok()
        .and_then(|p| pci_ancestor(&p))
        .and_then(|p| CString::new(p.to_string_lossy().into_owned()).ok());
    let speed = read_num(&format!("{sys}/speed"))
        .filter(|&s| s > 0 && s < i32::MAX as i64)
        .map_or(10_000, |s| s as i32);
    let mtu = read_num(&format!("{sys}/mtu")).map_or(1500, |m| m.clamp(576, 65_536) as u32);
    let name = CString::new(format!("weir-{ifname}")).unwrap_or_default();
    Device {
        name,
        pci_path,
        ifname,
        addr,
        speed,
        mtu,
    }
}

/// The nearest ancestor (or self) of a sysfs device path named like a PCI function
/// (`0000:00:03.0`): a virtio NIC's `device` link points at `.../0000:00:03.0/virtio2`, and
/// NCCL wants the PCI function.
fn pci_ancestor(p: &std::path::Path) -> Option<std::path::PathBuf> {
    p.ancestors()
        .find(|a| {
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_pci_bdf)
        })
        .map(std::path::Path::to_path_buf)
}

fn is_pci_bdf(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

fn read_num(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// (name, address, up) of every interface with an IPv4 address.
fn ipv4_interfaces() -> Vec<(String, Ipv4Addr, bool)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null sockaddr from getifaddrs.
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        if family != libc::AF_INET {
            continue;
        }
        // SAFETY: family AF_INET means the sockaddr is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        // SAFETY: non-null NUL-terminated name from getifaddrs.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        out.push((name, addr, up));
    }
    // SAFETY: frees the list from getifaddrs once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_numbers_are_ignored() {
        let cfg = |pairs: &[(&str, &str)]| {
            let table: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::from_vars(&|name| table.get(name).cloned())
        };
        for loss in ["-1", "nan", "1.5", "inf", "x"] {
            assert_eq!(cfg(&[("WEIR_LOSS", loss)]).loss, 0.0, "WEIR_LOSS={loss}");
        }
        assert_eq!(cfg(&[("WEIR_LOSS", "0.25")]).loss, 0.25);
        for lat in ["-3", "nan", "inf", "2e6"] {
            let c = cfg(&[("WEIR_LATENCY_US", lat)]);
            assert_eq!(c.latency_us, DEFAULT_LATENCY_US, "WEIR_LATENCY_US={lat}");
        }
        assert_eq!(cfg(&[("WEIR_LATENCY_US", "4.5")]).latency_us, 4.5);
        let c = cfg(&[
            ("WEIR_PATHS", "0"),
            ("WEIR_RTO_MS", "0"),
            ("WEIR_DEBUG", "9"),
        ]);
        assert_eq!((c.paths, c.rto_ms, c.debug), (None, None, 2));
        let c = cfg(&[
            ("WEIR_PATHS", "16"),
            ("WEIR_RTO_MS", "5"),
            ("WEIR_DEBUG", "0"),
        ]);
        assert_eq!((c.paths, c.rto_ms, c.debug), (Some(16), Some(5), 0));
        assert_eq!(c.stream_region, None);
        assert_eq!(cfg(&[("WEIR_STREAM_REGION", "0")]).stream_region, Some(0));
        assert_eq!(
            cfg(&[("WEIR_STREAM_REGION", "1048576")]).stream_region,
            Some(1 << 20)
        );
        for bad in ["-1", "32M", "x"] {
            assert_eq!(
                cfg(&[("WEIR_STREAM_REGION", bad)]).stream_region,
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn weir_cc_takes_names_and_toml_files() {
        assert_eq!(
            cc_from("swift"),
            Ok(weir_congestion::CcConfig::by_name("swift").expect("swift"))
        );
        assert!(
            cc_from("cubic")
                .expect_err("must fail")
                .contains("unknown algorithm")
        );
        let dir = std::env::temp_dir().join(format!("weir-cc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.toml");
        std::fs::write(&good, "[cc]\nalgorithm = \"hpcc\"\neta = 0.9\n").expect("write");
        let cfg = cc_from(good.to_str().expect("utf8")).expect("good file");
        assert_eq!(cfg.name(), "hpcc");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[cc]\nalgorithm = \"hpcc\"\neta = 9\n").expect("write");
        let e = cc_from(bad.to_str().expect("utf8")).expect_err("must fail");
        assert!(e.contains("`eta` = 9 is out of range"), "{e}");
        assert!(
            cc_from("/nonexistent/x.toml")
                .expect_err("must fail")
                .contains("/nonexistent/x.toml")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pci_path_is_the_pci_function() {
        let p = std::path::Path::new("/sys/devices/pci0000:00/0000:00:03.0/virtio2");
        assert_eq!(
            pci_ancestor(p).as_deref(),
            Some(std::path::Path::new("/sys/devices/pci0000:00/0000:00:03.0"))
        );
        assert_eq!(
            pci_ancestor(std::path::Path::new("/sys/devices/virtual/net/lo")),
            None
        );
        assert!(is_pci_bdf("0000:af:00.1"));
        assert!(!is_pci_bdf("pci0000:00"));
    }
}
