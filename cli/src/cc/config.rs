//! Policy files: TOML with a `[cc]` table naming the algorithm and setting its parameters.
//!
//! ```toml
//! [cc]
//! algorithm = "dcqcn"
//! rpg_time_reset = 55      # µs
//! rpg_ai_rate = 0.02       # Gbit/s
//! clamp_tgt_rate = true    # switches take true/false or 1/0
//! ```
//!
//! Contract: a file is accepted only if it is valid TOML, has a `[cc]` table with a string
//! `algorithm` that `weir_congestion::registry` knows, and every other key of `[cc]` is a
//! parameter of that algorithm with a number (or boolean) in range. Any other case is an error
//! whose message names the file and the offending key. Other top-level tables are left to their
//! owners (a transport or simulator section may share the file).

use std::path::Path;

use weir_congestion::AlgorithmInfo;

use super::policy;
#[cfg(test)]
use super::policy::Policy;

/// A policy file's algorithm and the parameters it sets (name, value), in file order.
pub(crate) type Parsed = (&'static AlgorithmInfo, Vec<(String, f64)>);

/// Reads `path`: its algorithm and the parameters it sets (not yet checked against the
/// algorithm; see [`policy::Policy::configure`]).
pub(crate) fn read(path: &Path) -> Result<Parsed, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    split(&text, &path.display().to_string())
}

/// Checks the policy in `text`; `origin` names it in errors.
#[cfg(test)]
pub(crate) fn parse(text: &str, origin: &str) -> Result<Policy, String> {
    let (algo, overrides) = split(text, origin)?;
    Policy::configure(algo, &overrides).map_err(|e| format!("{origin}: [cc] {e}"))
}

/// The algorithm `text` names and the parameters it sets.
fn split(text: &str, origin: &str) -> Result<Parsed, String> {
    let (algorithm, overrides) =
        weir_congestion::toml_file::parse(text).map_err(|e| format!("{origin}: {e}"))?;
    let algo = policy::find(&algorithm).map_err(|e| format!("{origin}: [cc] {e}"))?;
    Ok((algo, overrides))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "p.toml").unwrap_err()
    }

    #[test]
    fn a_valid_file_overrides_defaults() {
        let p = parse(
            "[cc]\nalgorithm = \"dcqcn\"\nrpg_time_reset = 55\nrpg_ai_rate = 0.02\n\
             clamp_tgt_rate = true\n\n[transport]\nmtu = 4096\n",
            "p.toml",
        )
        .expect("valid");
        assert_eq!(p.algorithm, "dcqcn");
        assert_eq!(p.value("rpg_time_reset"), Some(55.0));
        assert_eq!(p.value("rpg_ai_rate"), Some(0.02));
        assert_eq!(p.value("clamp_tgt_rate"), Some(1.0));
        assert_eq!(
            p.value("rpg_byte_reset"),
            Some(32767.0),
            "untouched default"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        assert_eq!(
            err("[cc]\nalgorithm = \"dcqcn\"\nrpg_time_rest = 55\n"),
            "p.toml: [cc] unknown parameter `rpg_time_rest` for dcqcn"
        );
    }

    #[test]
    fn an_out_of_range_value_is_named() {
        assert_eq!(
            err("[cc]\nalgorithm = \"dcqcn\"\ndce_tcp_g = 2000\n"),
            "p.toml: [cc] `dce_tcp_g` = 2000 is out of range [0, 1024]"
        );
        assert!(
            err("[cc]\nalgorithm = \"dcqcn\"\nrpg_time_reset = -1.5\n")
                .contains("`rpg_time_reset`")
        );
        assert!(err("[cc]\nalgorithm = \"fixed\"\nwindow = nan\n").contains("`window`"));
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        assert!(
            err("[cc]\nalgorithm = \"dcqcn\"\nrpg_gd = \"11\"\n")
                .contains("`rpg_gd` must be a number")
        );
        assert!(err("[cc]\nalgorithm = \"bbr\"\n").contains("unknown algorithm `bbr`"));
        assert!(err("[cc]\nrpg_gd = 11\n").contains("no `algorithm`"));
        assert!(err("[cc]\nalgorithm = 3\n").contains("`algorithm` must be a string"));
        assert!(err("[transport]\nmtu = 1\n").contains("no [cc] table"));
        assert!(err("cc = 1\n").contains("must be a table"));
        assert!(err("[cc\n").starts_with("p.toml: "));
    }
}
