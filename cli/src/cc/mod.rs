//! `weir cc`: list, show, check and run congestion-control policies (to be written).

use clap::Args;

/// Arguments of `weir cc`.
#[derive(Debug, Args)]
pub(crate) struct CcArgs {}

/// Run `weir cc`.
pub(crate) fn run(_args: CcArgs) -> Result<(), Box<dyn std::error::Error>> {
    Err("weir cc: not yet available".into())
}
