use anyhow::{bail, Result};

use crate::cli::TranslateArgs;

pub fn run(_args: &TranslateArgs) -> Result<()> {
    bail!("translate: not written yet")
}
