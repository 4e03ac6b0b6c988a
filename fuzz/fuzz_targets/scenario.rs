//! `weir_sim::Scenario::from_toml`, the simulator's scenario parser, on arbitrary UTF-8: never
//! panics; an error names what is wrong (it is never empty); an accepted scenario validates
//! again, and when it is small (at most 16 hosts and 64 messages) it runs, with its simulated
//! time cut to 200 µs, without panicking — every configuration the parser accepts must be
//! one the simulator can run (`Scenario::validate`'s contract).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_sim::Scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut s = match Scenario::from_toml(text) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.0.is_empty(), "an empty error for {text:?}");
            return;
        }
    };
    assert_eq!(s.validate(), Ok(()), "accepted but not valid: {s:?}");
    let small = s.hosts() <= 16
        && s.all_jobs().iter().all(|j| match &j.workload {
            weir_sim::Workload::Messages { messages } => messages.len() <= 64,
            _ => true,
        });
    if small {
        s.run.max_time_us = s.run.max_time_us.min(200);
        let _ = weir_sim::run(&s);
    }
});
