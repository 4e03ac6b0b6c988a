//! The built-in algorithms, described once: name, one-line summary, the public source of the
//! law and its defaults, whether it is receiver-driven or needs INT, its parameters, and how to
//! configure it. [`crate::ALGORITHMS`], [`CcConfig::by_name`] / [`CcConfig::from_named`], TOML
//! `[cc]` tables, the simulator and `weir cc list|show|check|run` all read [`BUILTINS`].
//!
//! Contract: [`BUILTINS`] has exactly one entry per [`CcConfig`] variant, in the order
//! `weir cc list` prints them. Each entry's name is unique, lower case, and equal to
//! [`Params::ALGORITHM`] of its parameter struct and to [`CcConfig::name`] of every
//! configuration it builds; [`CcConfig::info`] leads back to the entry.
//! [`AlgorithmInfo::configure`] applies overrides in order over the defaults, each checked by
//! [`Params::set`] (unknown names and out-of-range values are errors naming the parameter;
//! nothing is clamped). Adding a built-in is a [`CcConfig`] variant, a `From<XParams>` impl,
//! and one entry here.

use crate::params::{ParamError, ParamSpec, Params};
use crate::{CcConfig, DcqcnParams, FixedParams, HpccParams, NsccParams, RcccParams, SwiftParams};
use crate::{TimelyParams, dcqcn_params, fixed, hpcc, nscc, rccc, swift, timely};

/// One built-in algorithm.
#[derive(Clone, Copy, Debug)]
pub struct AlgorithmInfo {
    /// Name on the command line, in `WEIR_CC` and in `[cc] algorithm = "…"`.
    pub name: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// The public source (paper, specification, vendor documentation, reference code) of the
    /// law and of its defaults.
    pub citation: &'static str,
    /// The sender sends only against credit granted by the receiver: it cannot run where no
    /// receiver meters credit (such as the bottleneck model of `weir cc run`).
    pub receiver_driven: bool,
    /// The law needs in-band network telemetry (see [`crate::CongestionControl::needs_int`]).
    pub needs_int: bool,
    /// Parameters, in display order.
    pub specs: &'static [ParamSpec],
    defaults: fn() -> CcConfig,
    configure: Configure,
}

/// Builds a configuration from overrides (name, value), applied in order over the defaults.
type Configure = fn(&[(&str, f64)]) -> Result<CcConfig, ParamError>;

impl AlgorithmInfo {
    /// The algorithm with its published defaults.
    pub fn defaults(&self) -> CcConfig {
        (self.defaults)()
    }

    /// The algorithm with `overrides` (parameter name, value in the unit of its
    /// [`ParamSpec`]) applied in order to the defaults.
    pub fn configure(&self, overrides: &[(&str, f64)]) -> Result<CcConfig, ParamError> {
        (self.configure)(overrides)
    }
}

/// The built-in called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static AlgorithmInfo> {
    BUILTINS.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Every built-in, in the order `weir cc list` prints them.
pub const BUILTINS: &[AlgorithmInfo] = &[DCQCN, TIMELY, SWIFT, HPCC, NSCC, RCCC, FIXED];

/// The names of [`BUILTINS`], in order.
pub(crate) const NAMES: [&str; BUILTINS.len()] = {
    let mut names = [""; BUILTINS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = BUILTINS[i].name;
        i += 1;
    }
    names
};

fn defaults<P: Params + Into<CcConfig>>() -> CcConfig {
    P::default().into()
}

fn configure<P: Params + Into<CcConfig>>(
    overrides: &[(&str, f64)],
) -> Result<CcConfig, ParamError> {
    let mut p = P::default();
    for &(name, value) in overrides {
        p.set(name, value)?;
    }
    Ok(p.into())
}

pub(crate) const DCQCN: AlgorithmInfo = AlgorithmInfo {
    name: DcqcnParams::ALGORITHM,
    summary: "ECN/CNP-driven rate control, the RoCEv2 default",
    citation: "Zhu et al., \"Congestion Control for Large-Scale RDMA Deployments\", SIGCOMM \
               2015; defaults of NVIDIA ConnectX firmware (DOCA \"DCQCN CC Parameters\")",
    receiver_driven: false,
    needs_int: false,
    specs: dcqcn_params::SPECS,
    defaults: defaults::<DcqcnParams>,
    configure: configure::<DcqcnParams>,
};

pub(crate) const TIMELY: AlgorithmInfo = AlgorithmInfo {
    name: TimelyParams::ALGORITHM,
    summary: "RTT-gradient rate control",
    citation: "Mittal et al., \"TIMELY: RTT-based Congestion Control for the Datacenter\", \
               SIGCOMM 2015, §4 (Algorithm 1) and §6",
    receiver_driven: false,
    needs_int: false,
    specs: timely::SPECS,
    defaults: defaults::<TimelyParams>,
    configure: configure::<TimelyParams>,
};

pub(crate) const SWIFT: AlgorithmInfo = AlgorithmInfo {
    name: SwiftParams::ALGORITHM,
    summary: "delay-target window control (fabric + host)",
    citation: "Kumar et al., \"Swift: Delay is Simple and Effective for Congestion Control in \
               the Datacenter\", SIGCOMM 2020, §3 (Algorithm 1); defaults from Google's Falcon \
               RUE model (Isekai)",
    receiver_driven: false,
    needs_int: false,
    specs: swift::SPECS,
    defaults: defaults::<SwiftParams>,
    configure: configure::<SwiftParams>,
};

pub(crate) const HPCC: AlgorithmInfo = AlgorithmInfo {
    name: HpccParams::ALGORITHM,
    summary: "INT-driven window control (needs INT)",
    citation: "Li et al., \"HPCC: High Precision Congestion Control\", SIGCOMM 2019, §3 and \
               Algorithm 1; defaults from the authors' ns-3 model \
               (alibaba-edu/High-Precision-Congestion-Control, simulation/run.py)",
    receiver_driven: false,
    needs_int: true,
    specs: hpcc::SPECS,
    defaults: defaults::<HpccParams>,
    configure: configure::<HpccParams>,
};

pub(crate) const NSCC: AlgorithmInfo = AlgorithmInfo {
    name: NsccParams::ALGORITHM,
    summary: "UEC delay + ECN window control with QuickAdapt",
    citation: "Ultra Ethernet Consortium, UE 1.0 NSCC (Network-Signal Congestion Control), as \
               implemented in ultraethernet/uet-htsim htsim/sim/uec.cpp; design paper SMaRTT \
               (arXiv 2404.01630)",
    receiver_driven: false,
    needs_int: false,
    specs: nscc::SPECS,
    defaults: defaults::<NsccParams>,
    configure: configure::<NsccParams>,
};

pub(crate) const RCCC: AlgorithmInfo = AlgorithmInfo {
    name: RcccParams::ALGORITHM,
    summary: "UEC receiver credit (pull) for last-hop incast; receiver-driven",
    citation: "Ultra Ethernet Consortium, UE 1.0 RCCC (Receiver Credit Congestion Control), as \
               implemented in ultraethernet/uet-htsim; pull pacing after NDP (Handley et al., \
               SIGCOMM 2017)",
    receiver_driven: true,
    needs_int: false,
    specs: rccc::SPECS,
    defaults: defaults::<RcccParams>,
    configure: configure::<RcccParams>,
};

pub(crate) const FIXED: AlgorithmInfo = AlgorithmInfo {
    name: FixedParams::ALGORITHM,
    summary: "a constant window and optional constant rate; the baseline",
    citation: "none: no control law (Weir's baseline for lossless tests)",
    receiver_driven: false,
    needs_int: false,
    specs: fixed::SPECS,
    defaults: defaults::<FixedParams>,
    configure: configure::<FixedParams>,
};

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use weir_base::{Instant, Rate};

    use super::*;
    use crate::{CcFactory, CongestionControl, PathInfo};

    #[test]
    fn every_entry_is_consistent_with_what_it_builds() {
        let path = PathInfo {
            mtu: 4096,
            line_rate: Rate::from_gbps(100),
            base_rtt: None,
            paths: 8,
        };
        for (i, a) in BUILTINS.iter().enumerate() {
            assert!(BUILTINS[..i].iter().all(|b| b.name != a.name), "{}", a.name);
            assert_eq!(a.name, a.name.to_ascii_lowercase());
            assert_eq!(NAMES[i], a.name);
            assert!(
                !a.summary.is_empty() && !a.citation.is_empty(),
                "{}",
                a.name
            );
            let cfg = a.defaults();
            assert_eq!(cfg.name(), a.name);
            assert_eq!(cfg.info().name, a.name);
            assert_eq!(a.configure(&[]), Ok(cfg));
            assert_eq!(cfg.needs_int(), a.needs_int);
            assert_eq!(
                a.receiver_driven,
                matches!(cfg, CcConfig::Rccc(_)),
                "{}",
                a.name
            );
            let cc = cfg.build(Instant::ZERO, &path);
            assert_eq!(cc.name(), a.name);
            assert_eq!(cc.needs_int(), a.needs_int, "{}", a.name);
            // Every parameter reads back its default, in range.
            for s in a.specs {
                let d = cfg.get(s.name).expect(s.name);
                assert!(d >= s.min && d <= s.max, "{}.{} = {d}", a.name, s.name);
            }
            let values: Vec<f64> = cfg.values().map(|(_, v)| v).collect();
            assert_eq!(values.len(), a.specs.len());
            assert_eq!(cfg.get("no_such_parameter"), None);
        }
        assert_eq!(find("DCQCN").expect("dcqcn").name, "dcqcn");
        assert!(find("cubic").is_none());
    }

    #[test]
    fn overrides_apply_in_order_and_errors_name_the_key() {
        let a = find("fixed").expect("fixed");
        let cfg = a
            .configure(&[("window", 1000.0), ("rate", 2.5), ("window", 2000.0)])
            .expect("valid");
        assert_eq!(cfg.get("window"), Some(2000.0));
        assert_eq!(cfg.get("rate"), Some(2.5));
        let e = a.configure(&[("widnow", 1.0)]).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "unknown parameter `widnow` for fixed"
        );
        let e = a.configure(&[("window", 0.5)]).unwrap_err();
        assert!(alloc::format!("{e}").contains("`window`"));
    }
}
