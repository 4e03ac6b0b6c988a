//! Policies: what `weir cc check` prints and `weir cc run` runs.
//!
//! Contract: the algorithms (names, summaries, citations, parameters, defaults) come from
//! `weir_congestion::registry::BUILTINS` alone; this module adds only what the command needs:
//! lookups whose errors are text naming the known algorithms, and a [`Policy`], an algorithm
//! with every parameter resolved (defaults overridden by name) that builds one controller per
//! flow, and that also covers eBPF programs, which are not in the table. Names are checked
//! against the algorithm's `ParamSpec`s and values against their ranges by `Params::set`;
//! errors name the parameter.

use std::fmt;
use std::sync::Arc;

use weir_base::Instant;
use weir_congestion::{
    ALGORITHMS, AlgorithmInfo, CcFactory, CongestionControl, ParamError, ParamSpec, PathInfo,
    registry,
};

use weir_policy::faults::{FaultLog, Faults};

/// Builds one controller for flow `Some(i)` of a run (or `None`: a probe outside any run)
/// starting at `now` on `path`.
pub(crate) type Factory =
    Box<dyn Fn(Option<usize>, Instant, &PathInfo) -> Box<dyn CongestionControl>>;

/// The built-in called `name` (case-insensitive).
pub(crate) fn find(name: &str) -> Result<&'static AlgorithmInfo, String> {
    registry::find(name).ok_or_else(|| {
        format!(
            "unknown algorithm `{name}` (known: {})",
            ALGORITHMS.join(", ")
        )
    })
}

/// The default of each parameter of `a`, in the order of its specs.
pub(crate) fn defaults(a: &AlgorithmInfo) -> Vec<f64> {
    a.defaults().values().map(|(_, v)| v).collect()
}

/// An algorithm with all its parameters resolved: what `weir cc check` prints and what
/// `weir cc run` runs.
pub(crate) struct Policy {
    /// Algorithm name.
    pub(crate) algorithm: &'static str,
    /// The sender sends only against the receiver's credit (see `AlgorithmInfo`).
    pub(crate) receiver_driven: bool,
    /// Every parameter with its effective value, in display order.
    pub(crate) values: Vec<(ParamSpec, f64)>,
    factory: Factory,
    /// eBPF programs: the run-time faults of the flows built with [`Policy::build_flow`].
    faults: Option<Arc<FaultLog>>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("algorithm", &self.algorithm)
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// The built-in `a` with `overrides` (name, value in the parameter's unit) applied to its
    /// defaults, in order.
    pub(crate) fn configure(
        a: &AlgorithmInfo,
        overrides: &[(String, f64)],
    ) -> Result<Policy, ParamError> {
        let named: Vec<(&str, f64)> = overrides.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let cfg = a.configure(&named)?;
        Ok(Policy {
            algorithm: a.name,
            receiver_driven: a.receiver_driven,
            values: cfg.values().map(|(s, v)| (*s, v)).collect(),
            factory: Box::new(move |_, now, path| Box::new(cfg.build(now, path))),
            faults: None,
        })
    }

    /// A policy from its parts (eBPF programs, which are not in the table and are never
    /// receiver-driven), with the log its flows record their faults in.
    pub(crate) fn from_parts(
        algorithm: &'static str,
        values: Vec<(ParamSpec, f64)>,
        factory: Factory,
        faults: Arc<FaultLog>,
    ) -> Policy {
        Policy {
            algorithm,
            receiver_driven: false,
            values,
            factory,
            faults: Some(faults),
        }
    }

    /// A controller outside any run (to ask it what it needs); its faults are not recorded.
    pub(crate) fn build(&self, now: Instant, path: &PathInfo) -> Box<dyn CongestionControl> {
        (self.factory)(None, now, path)
    }

    /// The controller of flow `flow` of a run.
    pub(crate) fn build_flow(
        &self,
        flow: usize,
        now: Instant,
        path: &PathInfo,
    ) -> Box<dyn CongestionControl> {
        (self.factory)(Some(flow), now, path)
    }

    /// eBPF programs: the faults of the flows built so far, complete once they are dropped
    /// (`None` for the built-ins, which cannot fault).
    pub(crate) fn faults(&self) -> Option<Faults> {
        self.faults.as_ref().map(|log| log.snapshot())
    }

    /// The effective value of `name`, if the algorithm has such a parameter.
    #[cfg(test)]
    pub(crate) fn value(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use weir_base::Duration;
    use weir_congestion::registry::BUILTINS;
    use weir_congestion::testing::{self, Config, FlowSpec};

    use super::*;

    #[test]
    fn a_configured_policy_reports_every_parameter() {
        for a in BUILTINS {
            let p = Policy::configure(a, &[]).expect("defaults configure");
            assert_eq!(p.algorithm, a.name);
            assert_eq!(p.receiver_driven, a.receiver_driven);
            let specs: Vec<ParamSpec> = p.values.iter().map(|&(s, _)| s).collect();
            assert_eq!(specs, a.specs);
            let values: Vec<f64> = p.values.iter().map(|&(_, v)| v).collect();
            assert_eq!(values, defaults(a));
        }
    }

    #[test]
    fn every_algorithm_runs_on_the_bottleneck() {
        let cfg = Config {
            duration: Duration::from_micros(500),
            ..Config::default()
        };
        // A receiver-driven law (RCCC) needs a credit-granting receiver, which the model has
        // not (`run` refuses it).
        for a in BUILTINS.iter().filter(|a| !a.receiver_driven) {
            let p = Policy::configure(a, &[]).expect("defaults configure");
            let t = testing::run_with(&cfg, &FlowSpec::many(2, Instant::ZERO), |_, now, path| {
                p.build(now, path)
            });
            assert!(t.link.tx_bytes > 0, "{} sends nothing", a.name);
            assert_eq!(t.names, [a.name, a.name]);
        }
    }

    #[test]
    fn overrides_apply_in_order_and_errors_name_the_key() {
        let a = find("fixed").expect("registered");
        let p = Policy::configure(a, &[("window".into(), 1000.0), ("rate".into(), 2.5)])
            .expect("valid");
        assert_eq!(p.value("window"), Some(1000.0));
        assert_eq!(p.value("rate"), Some(2.5));
        let e = Policy::configure(a, &[("widnow".into(), 1.0)]).unwrap_err();
        assert_eq!(e.to_string(), "unknown parameter `widnow` for fixed");
        let e = Policy::configure(a, &[("window".into(), 0.5)]).unwrap_err();
        assert!(e.to_string().contains("`window`"));
        assert!(
            find("reno")
                .unwrap_err()
                .contains("known: dcqcn, timely, swift, hpcc, nscc, rccc, fixed")
        );
    }
}
