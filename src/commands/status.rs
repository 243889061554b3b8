use anyhow::{bail, Result};

use crate::cli::StatusArgs;

pub fn run(_args: &StatusArgs) -> Result<u8> {
    bail!("status: not written yet")
}
