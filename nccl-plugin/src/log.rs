//! NCCL's logger, kept from `init`, with stderr as the fallback before `init` (or when NCCL
//! passed none). Messages go out under the NET subsystem, pre-formatted behind a `"%s"`.

use std::ffi::{CString, c_int};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::ffi::{self, Logger};

/// The logger as an address (0 = none): a fn pointer is not atomic, an address is.
static LOGGER: AtomicUsize = AtomicUsize::new(0);
/// Highest level echoed to stderr when there is no NCCL logger (`WEIR_DEBUG`).
static STDERR_LEVEL: AtomicU32 = AtomicU32::new(ffi::NCCL_LOG_WARN as u32);

/// Keep NCCL's logger (or forget it with `None`).
pub(crate) fn set_logger(logger: Option<Logger>) {
    LOGGER.store(logger.map_or(0, |f| f as usize), Ordering::Release);
}

/// Set the stderr fallback level (an `ncclDebugLogLevel`).
pub(crate) fn set_stderr_level(level: u32) {
    STDERR_LEVEL.store(level, Ordering::Relaxed);
}

/// Log `msg` at `level` (an `ncclDebugLogLevel`).
pub(crate) fn log(level: c_int, msg: &str) {
    let addr = LOGGER.load(Ordering::Acquire);
    if addr != 0 {
        // SAFETY: `addr` was stored from a valid `Logger` by `set_logger`.
        let f: Logger = unsafe { std::mem::transmute::<usize, Logger>(addr) };
        // "NET/weir: " as NCCL's own transports prefix theirs ("NET/IB : ...").
        let text =
            CString::new(format!("NET/weir: {}", msg.replace('\0', " "))).unwrap_or_default();
        // SAFETY: NCCL's logger takes a printf format; "%s" consumes exactly one C string,
        // and every pointer is valid for the call.
        unsafe {
            f(
                level,
                ffi::NCCL_NET,
                c"weir".as_ptr(),
                0,
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        };
    } else if level as u32 <= STDERR_LEVEL.load(Ordering::Relaxed) {
        eprintln!("NCCL weir: {msg}");
    }
}

/// Log at WARN.
pub(crate) fn warn(msg: &str) {
    log(ffi::NCCL_LOG_WARN, msg);
}

/// Log at INFO.
pub(crate) fn info(msg: &str) {
    log(ffi::NCCL_LOG_INFO, msg);
}
