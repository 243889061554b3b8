//! Other programs (iptables and its kin), run with an argv, never through a shell.

use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context as _, Result};

/// Runs a program with an argv (never a shell), optionally feeding stdin.
pub fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> io::Result<Output> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    if let Some(input) = stdin {
        use io::Write as _;
        let mut pipe = child.stdin.take().expect("stdin was piped");
        match pipe.write_all(input.as_bytes()) {
            // It stopped reading (iptables-restore at a line it rejects): its exit status
            // and stderr say why.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    child.wait_with_output()
}

/// Like [`run`], but a non-zero exit is an error carrying the program's stderr.
pub fn run_checked(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let output =
        run(program, args, stdin).with_context(|| format!("cannot run {}", program.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{} {} failed ({}): {}",
            program.display(),
            args.join(" "),
            output.status,
            stderr.trim().replace('\n', "; ")
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("{} printed invalid UTF-8", program.display()))
}
