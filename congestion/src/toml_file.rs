//! `[cc]` tables in TOML (feature `toml`): what `weir cc check`, `weir bench --cc FILE.toml`
//! and the NCCL plugin's `WEIR_CC=FILE.toml` read.
//!
//! ```toml
//! [cc]
//! algorithm = "swift"      # one of ALGORITHMS
//! base_target = 25         # parameters by name, in their ParamSpec units
//! ```
//!
//! Contract: other tables are left alone (a file may configure other things too); inside
//! `[cc]` every key but `algorithm` must be a number or a boolean (`true` = 1), and must name a
//! parameter of the algorithm with an in-range value — anything else is an error that names
//! the key. Nothing is clamped silently.

extern crate std;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::CcConfig;

/// The `[cc]` table of `text`: the algorithm's name and the parameter overrides, in file
/// order. Errors say what is wrong and name the key.
pub fn parse(text: &str) -> Result<(String, Vec<(String, f64)>), String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let Some(cc) = doc.get("cc") else {
        return Err("no [cc] table".into());
    };
    let Some(cc) = cc.as_table() else {
        return Err("`cc` must be a table ([cc])".into());
    };
    let algorithm = match cc.get("algorithm") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(format!(
                "[cc] `algorithm` must be a string, not {}",
                v.type_str()
            ));
        }
        None => return Err("[cc] has no `algorithm` key".into()),
    };
    let mut overrides = Vec::new();
    for (key, value) in cc.iter().filter(|(k, _)| k.as_str() != "algorithm") {
        let v = match value {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            toml::Value::Boolean(b) => f64::from(u8::from(*b)),
            other => {
                return Err(format!(
                    "[cc] `{key}` must be a number or a boolean, not {}",
                    other.type_str()
                ));
            }
        };
        overrides.push((key.clone(), v));
    }
    Ok((algorithm, overrides))
}

/// A built-in's name (its published defaults), or the path of a TOML file with a `[cc]`
/// table (a path ending in `.toml`, whose text `read_file` returns — this crate does no
/// I/O): what `WEIR_CC` and `--cc` take. Errors say why.
pub fn load(
    spec: &str,
    read_file: impl FnOnce(&str) -> Result<String, String>,
) -> Result<CcConfig, String> {
    if spec.ends_with(".toml") {
        return cc_config(&read_file(spec)?);
    }
    CcConfig::by_name(spec).ok_or_else(|| {
        format!(
            "unknown algorithm `{spec}` (built-ins: {}; or a .toml file with a [cc] table)",
            crate::ALGORITHMS.join(", ")
        )
    })
}

/// The configuration `text` describes (see [`parse`] and [`CcConfig::from_named`]).
pub fn cc_config(text: &str) -> Result<CcConfig, String> {
    let (algorithm, overrides) = parse(text)?;
    let named: Vec<(&str, f64)> = overrides.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    CcConfig::from_named(&algorithm, &named).map_err(|e| format!("[cc] {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_become_configs_and_errors_name_the_key() {
        let cfg = cc_config("[cc]\nalgorithm = \"nscc\"\n\n[transport]\nmtu = 9000\n").expect("ok");
        assert_eq!(cfg, CcConfig::by_name("nscc").expect("nscc"));
        let e = cc_config("[cc]\nalgorithm = \"swift\"\nbase_targt = 3\n").unwrap_err();
        assert_eq!(e, "[cc] unknown parameter `base_targt` for swift");
        let e = cc_config("[cc]\nalgorithm = \"hpcc\"\neta = 2\n").unwrap_err();
        assert!(e.contains("`eta` = 2 is out of range"), "{e}");
        let e = cc_config("[cc]\nalgorithm = \"hpcc\"\neta = \"high\"\n").unwrap_err();
        assert!(e.contains("`eta` must be a number"), "{e}");
        assert!(
            cc_config("[cc]\nalgorithm = \"cubic\"\n")
                .unwrap_err()
                .contains("`cubic`")
        );
        assert!(cc_config("[net]\n").unwrap_err().contains("no [cc] table"));
        assert!(cc_config("[cc\n").is_err());
    }
}
