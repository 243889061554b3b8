//! The packages: scripts/package.sh builds the RPM and the DEB from the checkout.
//! Their file lists (paths, modes, owners, RPM file flags) and dependencies are exactly
//! tests/expected/packages/*; the RPM installs into a scratch root (`rpm --root`) and the
//! DEB unpacks (`dpkg -x`), and in each the binary runs, is static (one build for RHEL 8's
//! glibc 2.28 and the newest Fedora) and resolves user names, `man -l` renders every page,
//! the units and the configuration are the checkout's, and the configuration is root-owned
//! 0644, which a root install accepts (in a sandbox).

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_expected, tool_for_part};

fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command and returns its stdout, failing the test with its stderr on failure.
fn output(command: &mut Command) -> String {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The one package of `extension` scripts/package.sh left in target/packages.
fn built(extension: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(checkout().join("target/packages"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    assert_eq!(found.len(), 1, "target/packages: {found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn packages_build_install_and_hold_what_they_should() {
    let test = "packages_build_install_and_hold_what_they_should";
    // Root installs the RPM into a scratch root and owns what dpkg -x unpacks; the sandbox
    // part needs namespaces.
    if !common::namespaces_available(test) {
        return;
    }
    for (tool, part) in [
        ("rpmbuild", "building the RPM"),
        ("rpm", "reading and installing the RPM"),
        ("dpkg-deb", "building and reading the DEB"),
        ("man", "rendering the packaged man pages"),
    ] {
        if !tool_for_part(test, tool, part) {
            return;
        }
    }
    output(&mut Command::new(checkout().join("scripts/package.sh")));
    let rpm = built("rpm");
    let deb = built("deb");

    let rpm_files = output(Command::new("rpm").arg("-qp").arg(&rpm).args([
        "--qf",
        "[%{FILEFLAGS:fflags}\t%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]",
    ]));
    assert_expected("packages/rpm-files.txt", &rpm_files);
    // rpmlib() features are the building rpm's; the rest is what the package asks for.
    let query = |what: &str| {
        output(Command::new("rpm").args(["-qp", what]).arg(&rpm))
            .lines()
            .filter(|line| !line.starts_with("rpmlib(") || line.starts_with("rpmlib(PayloadIs"))
            .map(|line| format!("{what} {line}\n"))
            .collect::<String>()
            .replace(env!("CARGO_PKG_VERSION"), "@VERSION@")
    };
    assert_expected(
        "packages/rpm-dependencies.txt",
        &(query("--requires") + &query("--recommends") + &query("--suggests")),
    );

    let deb_files: String = output(Command::new("dpkg-deb").arg("-c").arg(&deb))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            format!("{} {} {}\n", fields[0], fields[1], fields[5])
        })
        .collect();
    assert_expected("packages/deb-files.txt", &deb_files);
    let fields = output(Command::new("dpkg-deb").args(["-f"]).arg(&deb).args([
        "Package",
        "Depends",
        "Recommends",
        "Suggests",
    ]));
    let conffiles = output(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_expected(
        "packages/deb-control.txt",
        &format!("{fields}conffiles: {conffiles}"),
    );

    // The RPM into a scratch root (its scriptlets only call systemctl), the DEB unpacked.
    let rpm_root = tempfile::tempdir().unwrap();
    output(
        Command::new("rpm")
            .arg("--root")
            .arg(rpm_root.path())
            .args(["--nodeps", "--noscripts", "-i"])
            .arg(&rpm),
    );
    let deb_root = tempfile::tempdir().unwrap();
    output(
        Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(deb_root.path()),
    );
    for root in [rpm_root.path(), deb_root.path()] {
        check_installed(root);
    }
    check_config_accepted_as_root(deb_root.path());
}

/// What every installed tree must hold and do.
fn check_installed(root: &Path) {
    let binary = root.join("usr/bin/tproxy-firewalld");
    let version = output(Command::new(&binary).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("tproxy-firewalld {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        !has_interpreter(&std::fs::read(&binary).unwrap()),
        "{}: dynamically linked; RHEL 8's glibc 2.28 could not run it",
        binary.display()
    );
    // Static glibc still resolves user names (nobody is 65534 on Debian and RHEL).
    let dry_run = output(
        Command::new(&binary)
            .args(["install", "--dry-run", "--kuma-dp-user", "nobody"])
            .args(["--ip-family-mode", "ipv4"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus"),
    );
    let nobody = output(Command::new("id").args(["-u", "nobody"]));
    assert!(
        dry_run.contains(&format!("--uid-owner {}", nobody.trim())),
        "{}: user name not resolved: {dry_run}",
        binary.display()
    );
    for page in std::fs::read_dir(checkout().join("man")).unwrap() {
        let name = page.unwrap().file_name().into_string().unwrap();
        let packaged = root.join("usr/share/man/man8").join(format!("{name}.gz"));
        let rendered = output(
            Command::new("man")
                .arg("-l")
                .arg(&packaged)
                .env("MANWIDTH", "80"),
        );
        let command = name.trim_end_matches(".8");
        assert!(
            rendered.contains("NAME") && rendered.contains(command),
            "man -l {}: {rendered}",
            packaged.display()
        );
    }
    for (packaged, source) in [
        (
            "usr/lib/systemd/system/tproxy-firewalld.service",
            "packaging/systemd/tproxy-firewalld.service",
        ),
        ("etc/tproxy-firewalld/config.yaml", "packaging/config.yaml"),
    ] {
        assert_eq!(
            std::fs::read(root.join(packaged)).unwrap(),
            std::fs::read(checkout().join(source)).unwrap(),
            "{packaged} differs from {source}"
        );
    }
    let config = std::fs::metadata(root.join("etc/tproxy-firewalld/config.yaml")).unwrap();
    assert_eq!(
        (config.uid(), config.gid(), config.mode() & 0o7777),
        (0, 0, 0o644),
        "{}: /etc/tproxy-firewalld/config.yaml",
        root.display()
    );
}

/// Whether an ELF executable names a program interpreter (a PT_INTERP program header):
/// only dynamically linked ones do.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a 64-bit little-endian ELF"
    );
    let read = |at: usize, size: usize| {
        elf[at..at + size]
            .iter()
            .rev()
            .fold(0usize, |value, byte| value << 8 | *byte as usize)
    };
    let (table, entry_size, entries) = (read(0x20, 8), read(0x36, 2), read(0x38, 2));
    (0..entries).any(|i| read(table + i * entry_size, 4) == PT_INTERP as usize)
}

/// The packaged binary, as root in a sandbox, installs what the packaged configuration (as
/// the package created it) asks for: the configuration passes the check that refuses files
/// other users could change.
fn check_config_accepted_as_root(root: &Path) {
    let sandbox = common::Sandbox::new();
    let config = root.join("etc/tproxy-firewalld/config.yaml");
    let binary = root.join("usr/bin/tproxy-firewalld");
    let installed = sandbox
        .command(&[
            binary.to_str().unwrap(),
            "install",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(
        sandbox
            .save("iptables-save")
            .contains("--dport 22 -j RETURN"),
        "the packaged configuration's rules are not installed"
    );
}
