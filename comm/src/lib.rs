//! Weir communicators (placeholder; see issue 6).
#![warn(missing_docs)]
