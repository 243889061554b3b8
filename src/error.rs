//! How a run ends: exit statuses, and the error `main` turns into one line on stderr.

use std::fmt;

/// A failure while inspecting or changing the host; `inspect` also uses it when the
/// configuration it read has problems.
pub const EXIT_FAILURE: u8 = 1;
/// Bad input (flags, config files, environment, a user name): nothing was changed.
pub const EXIT_BAD_INPUT: u8 = 2;
/// `status`: the views differ.
pub const EXIT_DRIFT: u8 = 3;

/// Bad input from the user, anywhere in an error's chain: exit status [`EXIT_BAD_INPUT`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A run's error: its whole cause chain, and the exit status it asks for.
#[derive(Debug)]
pub struct Error {
    error: anyhow::Error,
}

impl Error {
    /// [`EXIT_BAD_INPUT`] when the cause is bad input, else [`EXIT_FAILURE`].
    pub fn exit_status(&self) -> u8 {
        if self.error.downcast_ref::<BadInput>().is_some() {
            EXIT_BAD_INPUT
        } else {
            EXIT_FAILURE
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        Error { error }
    }
}

impl From<BadInput> for Error {
    fn from(error: BadInput) -> Self {
        Error {
            error: error.into(),
        }
    }
}

/// One line: the cause chain joined, as the operator needs it. Control characters (a
/// newline in a file name, a user name or a config value) are escaped, so that the message
/// stays one line and cannot forge another.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in format!("{:#}", self.error).chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn bad_input_anywhere_in_the_chain_is_exit_status_2() {
        let error: anyhow::Error = BadInput("--port 0".into()).into();
        let error = Error::from(Err::<(), _>(error).context("config x").unwrap_err());
        assert_eq!(error.exit_status(), EXIT_BAD_INPUT);
        assert_eq!(error.to_string(), "config x: --port 0");
        assert_eq!(
            Error::from(anyhow::anyhow!("no bus")).exit_status(),
            EXIT_FAILURE
        );
    }

    #[test]
    fn the_message_stays_one_line() {
        let error = Error::from(anyhow::anyhow!("user a\nb\u{1b}[31m"));
        assert_eq!(error.to_string(), "user a\\nb\\u{1b}[31m");
    }
}
