//! Parsing and printing of the benchmark's quantities: message sizes ("64K", "8M", "1G"),
//! loss probabilities ("0.01", "1%"), and the short forms the table prints.

/// Parse a byte count: a decimal integer with an optional binary suffix `K`, `M`, `G` (also
/// written `k`, `KiB`, `KB`; every suffix means a power of 1024). Zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "`{s}`: expected a number such as 4096, 64K, 8M or 1G"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: number out of range"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "`{s}`: unknown suffix `{other}` (use K, M or G, powers of 1024)"
            ));
        }
    };
    let v = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}`: too large"))?;
    if v == 0 {
        return Err(format!("`{s}`: a size must be at least one byte"));
    }
    Ok(v)
}

/// Parse a loss probability: a fraction (`0.01`) or a percentage (`1%`), in `[0, 1)`.
pub fn parse_loss(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), 0.01),
        None => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| {
        format!("`{s}`: expected a fraction such as 0.01 or a percentage such as 1%")
    })?;
    let v = v * scale;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("`{s}`: loss must lie in [0, 1)"));
    }
    Ok(v)
}

/// A size as the table prints it: `512 B`, `64 KiB`, `1 MiB`, `1.5 MiB`.
pub fn fmt_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit {
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes >> shift)
            } else {
                format!("{:.1} {name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} B")
}

/// A loss probability as the table prints it: `0`, `0.1%`, `1%`, `5%`, `0.01%`.
pub fn fmt_loss(loss: f64) -> String {
    if loss == 0.0 {
        return "0".to_string();
    }
    let pct = loss * 100.0;
    // Up to three decimals, trailing zeros dropped: 0.1 → "0.1%", 5.0 → "5%".
    let s = format!("{pct:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size(" 2 MB "), Ok(2 << 20));
        assert_eq!(parse_size("512B"), Ok(512));
    }

    #[test]
    fn sizes_rejected() {
        for bad in [
            "",
            "K",
            "0",
            "0K",
            "12T",
            "1.5M",
            "-1",
            "99999999999999999999",
            "17179869184G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn losses() {
        assert_eq!(parse_loss("0"), Ok(0.0));
        assert_eq!(parse_loss("0.001"), Ok(0.001));
        assert_eq!(parse_loss("0.05"), Ok(0.05));
        assert!((parse_loss("1%").expect("1%") - 0.01).abs() < 1e-12);
        assert!((parse_loss("0.1 %").expect("0.1%") - 0.001).abs() < 1e-12);
        for bad in ["", "x", "1", "1.5", "-0.1", "100%", "nan"] {
            assert!(parse_loss(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn printing() {
        assert_eq!(fmt_size(512), "512 B");
        assert_eq!(fmt_size(64 << 10), "64 KiB");
        assert_eq!(fmt_size(1 << 20), "1 MiB");
        assert_eq!(fmt_size(3 << 19), "1.5 MiB");
        assert_eq!(fmt_size(64 << 20), "64 MiB");
        assert_eq!(fmt_size(1 << 30), "1 GiB");
        assert_eq!(fmt_loss(0.0), "0");
        assert_eq!(fmt_loss(0.001), "0.1%");
        assert_eq!(fmt_loss(0.01), "1%");
        assert_eq!(fmt_loss(0.05), "5%");
        assert_eq!(fmt_loss(0.0001), "0.01%");
    }
}
