//! The algorithms `weir cc` knows, and the configured policies it builds from them.
//!
//! Contract: [`algorithms`] is the one table of algorithms. Adding a built-in whose parameter
//! struct implements [`Params`] (and `Default`) and whose constructor has the shape
//! `X::new(now: Instant, path: &PathInfo, params: XParams) -> X` is one line there:
//! `builtin::<XParams, _>("one-line summary", X::new)`. A [`Policy`] is an algorithm with every
//! parameter resolved (defaults overridden by name); it builds one controller per flow. Names
//! are checked against the algorithm's [`ParamSpec`]s and values against their ranges by
//! [`Params::set`]; errors name the parameter.

use std::fmt;

use weir_base::Instant;
use weir_congestion::{
    CongestionControl, Dcqcn, DcqcnParams, FixedParams, Hpcc, HpccParams, Nscc, NsccParams,
    ParamError, ParamSpec, Params, PathInfo, Rccc, RcccParams, Swift, SwiftParams, Timely,
    TimelyParams,
};

/// Builds one controller for a flow starting at `now` on `path`.
pub(crate) type Factory = Box<dyn Fn(Instant, &PathInfo) -> Box<dyn CongestionControl>>;

/// Builds a policy from parameter overrides (name, value in the parameter's unit).
type Configure = Box<dyn Fn(&[(String, f64)]) -> Result<Policy, ParamError>>;

/// One algorithm in the registry.
pub(crate) struct Algorithm {
    /// Name used on the command line and in `[cc] algorithm = "…"`.
    pub(crate) name: &'static str,
    /// One-line description.
    pub(crate) summary: &'static str,
    /// Paper/spec the law and defaults come from.
    pub(crate) citation: &'static str,
    /// Parameters, in display order.
    pub(crate) specs: &'static [ParamSpec],
    /// Default value of each parameter, in the order of `specs`.
    pub(crate) defaults: Vec<f64>,
    /// Builds a policy with the given parameters set over the defaults, in order.
    configure: Configure,
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Algorithm")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Algorithm {
    /// A policy with `overrides` (name, value in the parameter's unit) applied to the defaults.
    pub(crate) fn configure(&self, overrides: &[(String, f64)]) -> Result<Policy, ParamError> {
        (self.configure)(overrides)
    }
}

/// An algorithm with all its parameters resolved: what `weir cc check` prints and what
/// `weir cc run` runs.
pub(crate) struct Policy {
    /// Algorithm name.
    pub(crate) algorithm: &'static str,
    /// Every parameter with its effective value, in display order.
    pub(crate) values: Vec<(ParamSpec, f64)>,
    factory: Factory,
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
    /// A policy from its parts (eBPF programs, which are not in the table).
    pub(crate) fn from_parts(
        algorithm: &'static str,
        values: Vec<(ParamSpec, f64)>,
        factory: Factory,
    ) -> Policy {
        Policy {
            algorithm,
            values,
            factory,
        }
    }

    /// A controller for one flow.
    pub(crate) fn build(&self, now: Instant, path: &PathInfo) -> Box<dyn CongestionControl> {
        (self.factory)(now, path)
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

/// The algorithm whose sender only sends against credit from the receiver; the bottleneck
/// model has no receiver that grants it.
pub(crate) const RECEIVER_DRIVEN: &str = "rccc";

/// Every algorithm, in the order `weir cc list` prints them.
pub(crate) fn algorithms() -> Vec<Algorithm> {
    vec![
        builtin::<DcqcnParams, _>(
            "ECN/CNP-driven rate control, the RoCEv2 default",
            Dcqcn::new,
        ),
        builtin::<TimelyParams, _>("RTT-gradient rate control", Timely::new),
        builtin::<SwiftParams, _>("delay-target window control (fabric + host)", Swift::new),
        builtin::<HpccParams, _>("INT-driven window control (needs INT)", Hpcc::new),
        builtin::<NsccParams, _>("UEC delay + ECN window control with QuickAdapt", Nscc::new),
        builtin::<RcccParams, _>(
            "UEC receiver credit (pull) for last-hop incast; receiver-driven",
            Rccc::new,
        ),
        builtin::<FixedParams, _>(
            "a constant window and optional constant rate; the baseline",
            |_, _, p: FixedParams| p.build(),
        ),
    ]
}

/// The algorithm called `name`.
pub(crate) fn find(name: &str) -> Result<Algorithm, String> {
    let all = algorithms();
    let names: Vec<&str> = all.iter().map(|a| a.name).collect();
    all.into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| format!("unknown algorithm `{name}` (known: {})", names.join(", ")))
}

/// A registry entry for a built-in with parameter struct `P` and constructor `new`.
fn builtin<P, C>(summary: &'static str, new: fn(Instant, &PathInfo, P) -> C) -> Algorithm
where
    P: Params + 'static,
    C: CongestionControl + 'static,
{
    let defaults = P::default();
    Algorithm {
        name: P::ALGORITHM,
        summary,
        citation: P::CITATION,
        specs: P::specs(),
        defaults: P::specs()
            .iter()
            .map(|s| defaults.get(s.name).unwrap_or(f64::NAN))
            .collect(),
        configure: Box::new(move |overrides| {
            let mut p = P::default();
            for (name, value) in overrides {
                p.set(name, *value)?;
            }
            let values = P::specs()
                .iter()
                .map(|s| (*s, p.get(s.name).unwrap_or(f64::NAN)))
                .collect();
            Ok(Policy {
                algorithm: P::ALGORITHM,
                values,
                factory: Box::new(move |now, path| Box::new(new(now, path, p.clone()))),
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use weir_base::Duration;
    use weir_congestion::testing::{self, Config, FlowSpec};

    use super::*;

    #[test]
    fn names_are_unique_and_every_default_is_in_range() {
        let all = algorithms();
        for (i, a) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|b| b.name != a.name), "{}", a.name);
            assert_eq!(a.defaults.len(), a.specs.len());
            for (s, &d) in a.specs.iter().zip(&a.defaults) {
                assert!(d >= s.min && d <= s.max, "{}.{} = {d}", a.name, s.name);
            }
            let p = a.configure(&[]).expect("defaults configure");
            let values: Vec<f64> = p.values.iter().map(|&(_, v)| v).collect();
            assert_eq!(values, a.defaults);
        }
    }

    #[test]
    fn every_algorithm_runs_on_the_bottleneck() {
        let cfg = Config {
            duration: Duration::from_micros(500),
            ..Config::default()
        };
        // RCCC is receiver-driven: the model has no credit-granting receiver (`run` refuses it).
        for a in algorithms()
            .into_iter()
            .filter(|a| a.name != RECEIVER_DRIVEN)
        {
            let p = a.configure(&[]).expect("defaults configure");
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
        let p = a
            .configure(&[("window".into(), 1000.0), ("rate".into(), 2.5)])
            .expect("valid");
        assert_eq!(p.value("window"), Some(1000.0));
        assert_eq!(p.value("rate"), Some(2.5));
        let e = a.configure(&[("widnow".into(), 1.0)]).unwrap_err();
        assert_eq!(e.to_string(), "unknown parameter `widnow` for fixed");
        let e = a.configure(&[("window".into(), 0.5)]).unwrap_err();
        assert!(e.to_string().contains("`window`"));
        assert!(
            find("reno")
                .unwrap_err()
                .contains("known: dcqcn, timely, swift, hpcc, nscc, rccc, fixed")
        );
    }
}
