use anyhow::{bail, Result};

use crate::cli::InspectArgs;

pub fn run(_args: &InspectArgs) -> Result<u8> {
    bail!("inspect: not written yet")
}
