//! Text formats, each knowing nothing of the CLI or of how it is applied.

pub mod restore;
