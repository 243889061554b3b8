//! Running our binary in a test and judging how it went: a hang fails the test instead of
//! stalling the suite.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{Sandbox, BIN};

/// Longest any single run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `command` (stdin from `stdin`, or nothing), killing it when it takes longer than
/// [`RUN_TIMEOUT`].
pub fn output_of(mut command: Command, stdin: Option<Vec<u8>>, what: &str) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the command");
    let pid = child.id();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // The command may stop reading early (a size limit): a broken pipe is fine.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => output.expect("wait for the command"),
        Err(_) => {
            // Only the process this test started, by its id.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what}: no answer within {RUN_TIMEOUT:?}; it hangs on this input");
        }
    }
}

/// Our binary inside the sandbox's namespaces, with `args` (any bytes) and extra `env`.
pub fn tproxy_in(
    sandbox: &Sandbox,
    args: &[OsString],
    env: &[(OsString, OsString)],
    stdin: Option<Vec<u8>>,
) -> Output {
    let mut command = sandbox.command(&[BIN]);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    output_of(command, stdin, &shown(args))
}

/// Our binary on the host (for commands that only read files).
pub fn tproxy_on_host(args: &[OsString]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        // Never the host's firewalld.
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    output_of(command, None, &shown(args))
}

pub fn shown(args: &[OsString]) -> String {
    let text: Vec<String> = args
        .iter()
        .map(|a| {
            let lossy = a.to_string_lossy();
            if lossy.chars().count() > 80 {
                let start: String = lossy.chars().take(60).collect();
                format!("{start}…({} bytes)", lossy.len())
            } else {
                format!("{lossy:?}")
            }
        })
        .collect();
    text.join(" ")
}
