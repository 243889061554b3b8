//! direct.xml on disk (`backend::direct_file`) and the fixtures in `xml-fixtures/`
//! (`format::direct_xml`). Every path is under a fresh temporary directory.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tproxy_firewalld::backend::direct_file::{Committed, DirectFile, MAX_SIZE};
use tproxy_firewalld::direct::{DirectChain, DirectConfig, DirectRule, Passthrough};
use tproxy_firewalld::format::direct_xml::{parse, render};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("xml-fixtures")
}

fn fixture(name: &str) -> String {
    fs::read_to_string(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Fixture file names starting with `prefix`, sorted.
fn fixture_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(prefix) && name.ends_with(".xml"))
        .collect();
    names.sort();
    names
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn chain(ipv: &str, table: &str, name: &str) -> DirectChain {
    DirectChain {
        ipv: ipv.into(),
        table: table.into(),
        chain: name.into(),
    }
}

fn rule(ipv: &str, table: &str, chain: &str, priority: i32, args: &[&str]) -> DirectRule {
    DirectRule {
        ipv: ipv.into(),
        table: table.into(),
        chain: chain.into(),
        priority,
        args: strings(args),
    }
}

fn passthrough(ipv: &str, args: &[&str]) -> Passthrough {
    Passthrough {
        ipv: ipv.into(),
        args: strings(args),
    }
}

/// Entries of ours, in the shape the installer writes them.
fn ours() -> DirectConfig {
    let comment = "kuma/mesh/transparent/proxy/outbound";
    DirectConfig {
        chains: vec![
            chain("ipv4", "nat", "KUMA_MESH_OUTBOUND"),
            chain("ipv6", "nat", "KUMA_MESH_OUTBOUND"),
        ],
        rules: vec![
            rule(
                "ipv4",
                "nat",
                "OUTPUT",
                0,
                &[
                    "-p",
                    "tcp",
                    "-m",
                    "comment",
                    "--comment",
                    comment,
                    "-j",
                    "KUMA_MESH_OUTBOUND",
                ],
            ),
            rule(
                "ipv4",
                "nat",
                "KUMA_MESH_OUTBOUND",
                1,
                &["-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"],
            ),
            rule(
                "ipv6",
                "nat",
                "KUMA_MESH_OUTBOUND",
                1,
                &[
                    "-m",
                    "comment",
                    "--comment",
                    "it's <ours> & \"quoted\"",
                    "-j",
                    "RETURN",
                ],
            ),
        ],
        passthroughs: vec![passthrough(
            "ipv4",
            &[
                "-t",
                "raw",
                "-A",
                "OUTPUT",
                "-m",
                "comment",
                "--comment",
                comment,
                "-j",
                "CT",
                "--notrack",
            ],
        )],
    }
}

/// Names in `dir`, sorted.
/// Replaces the file with `text` the way a change of ours does: read under a lease, the new
/// file staged beside it, then swapped in.
fn write(file: &DirectFile, text: &str) -> anyhow::Result<Committed> {
    write_with(file, &file.load_for_change()?, text)
}

fn write_with(
    file: &DirectFile,
    held: &tproxy_firewalld::backend::direct_file::Held,
    text: &str,
) -> anyhow::Result<Committed> {
    file.stage(text, held)?.commit()
}

fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// --- fixtures ---------------------------------------------------------------------------

/// The line each malformed fixture's error must point at.
const MALFORMED: &[(&str, usize)] = &[
    ("malformed-bad-ipv.xml", 4),
    ("malformed-bad-priority.xml", 4),
    ("malformed-bad-table.xml", 4),
    ("malformed-doctype.xml", 2),
    ("malformed-empty.xml", 1),
    ("malformed-mismatched-tag.xml", 4),
    ("malformed-missing-attribute.xml", 5),
    ("malformed-truncated.xml", 5),
    ("malformed-two-roots.xml", 5),
    ("malformed-unbalanced-quote.xml", 4),
    ("malformed-unknown-attribute.xml", 4),
    ("malformed-unknown-element.xml", 4),
    ("malformed-wrong-root.xml", 3),
];

#[test]
fn every_malformed_fixture_is_refused_with_its_line() {
    let names = fixture_names("malformed-");
    let listed: Vec<String> = MALFORMED.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(
        names, listed,
        "every malformed-*.xml needs its line in MALFORMED"
    );

    for (name, line) in MALFORMED {
        let text = fixture(name);
        let error = parse(&text).expect_err(name);
        assert_eq!(error.line, *line, "{name}: {error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("line {line}, column {}: ", error.column)),
            "{name}: {error}"
        );

        // Through the file layer: refused, with the path and the position.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("direct.xml");
        fs::write(&path, &text).unwrap();
        let before = listing(dir.path());
        let message = format!("{:#}", DirectFile::in_dir(dir.path()).load().unwrap_err());
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("line {line}, column {}", error.column)),
            "{message}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        assert_eq!(listing(dir.path()), before);
    }
}

#[test]
fn good_fixtures_keep_every_foreign_byte() {
    let names: Vec<String> = fixture_names("")
        .into_iter()
        .filter(|name| !name.starts_with("malformed-"))
        .collect();
    assert!(names.len() >= 6, "{names:?}");
    let empty = DirectConfig::default();
    for name in &names {
        let text = fixture(name);
        let document = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            document.config().owned().is_empty(),
            "{name} has entries of ours"
        );
        assert_eq!(document.with_owned(&empty), text, "{name}");

        let with_ours = document.with_owned(&ours());
        let reparsed = parse(&with_ours).unwrap_or_else(|e| panic!("{name}: {e}\n{with_ours}"));
        assert_eq!(reparsed.config().owned(), ours(), "{name}");
        assert_eq!(reparsed.config().foreign(), document.config(), "{name}");
        assert_eq!(reparsed.with_owned(&empty), text, "{name}");
        assert_eq!(reparsed.with_owned(&ours()), with_ours, "{name}");
    }
}

#[test]
fn firewalld_fixtures_render_back_byte_for_byte() {
    let names = fixture_names("firewalld-");
    assert!(names.len() >= 4, "{names:?}");
    for name in &names {
        let text = fixture(name);
        assert_eq!(render(&parse(&text).unwrap().config()), text, "{name}");
    }
}

#[test]
fn render_groups_entries_like_firewalld() {
    // firewalld-grouped.xml: firewall-offline-cmd added a rule to LOGDROP, a chain in
    // ipv4/filter and an ipv4 passthrough to firewalld-written.xml.
    let mut config = parse(&fixture("firewalld-written.xml")).unwrap().config();
    config
        .rules
        .push(rule("ipv4", "filter", "LOGDROP", 2, &["-j", "RETURN"]));
    config.chains.push(chain("ipv4", "filter", "ZZZ"));
    config.passthroughs.push(passthrough("ipv4", &["-L"]));
    assert_eq!(render(&config), fixture("firewalld-grouped.xml"));

    // firewalld-rewrote-foreign-mixed.xml: firewalld's own rewrite of foreign-mixed.xml
    // (comments, layout and the rule without arguments gone).
    let mixed = parse(&fixture("foreign-mixed.xml")).unwrap().config();
    assert_eq!(
        render(&mixed),
        fixture("firewalld-rewrote-foreign-mixed.xml")
    );
}

#[test]
fn foreign_mixed_reads_like_firewalld_reads_it() {
    let document = parse(&fixture("foreign-mixed.xml")).unwrap();
    // 4 chains, 6 rules (one without arguments), 2 passthroughs.
    assert_eq!(document.entries().len(), 12);
    let config = document.config();
    assert_eq!(config.chains.len(), 4);
    assert_eq!(config.rules.len(), 5);
    assert_eq!(
        config.rules[1],
        rule(
            "ipv4",
            "filter",
            "INPUT",
            -5,
            &[
                "-s",
                "192.0.2.0/24",
                "-m",
                "comment",
                "--comment",
                "it's & <fine>",
                "-j",
                "LOGDROP"
            ]
        )
    );
    assert_eq!(
        config.rules[2].args,
        strings(&[
            "-m",
            "comment",
            "--comment",
            "cdata & <raw>",
            "-j",
            "MARK",
            "--set-mark",
            "0x1"
        ])
    );
    assert_eq!(
        config.rules[3].args,
        strings(&["-p", "IPv4", "-j", "DROP", "#", "not", "a", "comment"])
    );
    assert_eq!(
        config.passthroughs[1].args,
        strings(&[
            "-t",
            "filter",
            "-A",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "",
            "-j",
            "ACCEPT"
        ])
    );
}

// --- DirectFile ------------------------------------------------------------------------

#[test]
fn a_new_file_is_rendered_with_0644_in_a_new_0750_directory() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("firewalld");
    let file = DirectFile::in_dir(&dir);
    assert_eq!(file.path(), dir.join("direct.xml"));
    assert!(file.load().unwrap().is_none());

    // Nothing of ours and no file: no file is created.
    assert_eq!(
        DirectFile::planned_text(None, &DirectConfig::default()),
        None
    );

    let text = DirectFile::planned_text(None, &ours()).unwrap();
    assert_eq!(text, render(&ours()));
    assert_eq!(write(&file, &text).unwrap(), Committed::Done);

    assert_eq!(fs::read_to_string(file.path()).unwrap(), text);
    assert_eq!(mode(file.path()), 0o644);
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(listing(&dir), BTreeSet::from(["direct.xml".to_string()]));

    let loaded = file.load().unwrap().unwrap();
    assert_eq!(loaded.text, text);
    assert_eq!(loaded.mode, 0o644);
    assert_eq!(loaded.document.config(), ours());
    assert_eq!(DirectFile::planned_text(Some(&loaded), &ours()), None);
}

#[test]
fn replacing_keeps_the_mode_and_the_previous_file_as_old() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    let foreign = fixture("foreign-mixed.xml");
    fs::write(file.path(), &foreign).unwrap();
    set_mode(file.path(), 0o600);

    let loaded = file.load().unwrap().unwrap();
    assert_eq!(loaded.mode, 0o600);
    let text = DirectFile::planned_text(Some(&loaded), &ours()).unwrap();
    assert_eq!(write(&file, &text).unwrap(), Committed::Done);

    assert_eq!(fs::read_to_string(file.path()).unwrap(), text);
    assert_eq!(mode(file.path()), 0o600);
    let old = dir.path().join("direct.xml.old");
    assert_eq!(fs::read_to_string(&old).unwrap(), foreign);
    assert_eq!(mode(&old), 0o600);
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["direct.xml".to_string(), "direct.xml.old".to_string()])
    );

    // Removing ours again gives the foreign file back, byte for byte.
    let loaded = file.load().unwrap().unwrap();
    assert_eq!(DirectFile::planned_text(Some(&loaded), &ours()), None);
    let back = DirectFile::planned_text(Some(&loaded), &DirectConfig::default()).unwrap();
    assert_eq!(back, foreign);
    assert_eq!(write(&file, &back).unwrap(), Committed::Done);
    assert_eq!(fs::read_to_string(file.path()).unwrap(), foreign);
    assert_eq!(fs::read_to_string(&old).unwrap(), text);
}

#[test]
fn a_file_open_for_writing_is_read_once_the_writer_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    fs::write(file.path(), fixture("firewalld-written.xml")).unwrap();

    let changed = fixture("firewalld-grouped.xml");
    let mut writing = fs::File::create(file.path()).unwrap();
    let writer = std::thread::spawn({
        let changed = changed.clone();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::io::Write::write_all(&mut writing, changed.as_bytes()).unwrap();
        }
    });
    let held = file.load_for_change().unwrap();
    writer.join().unwrap();
    assert_eq!(held.loaded.unwrap().text, changed);
}

#[test]
fn a_file_replaced_since_it_was_read_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    fs::write(file.path(), fixture("firewalld-written.xml")).unwrap();
    let held = file.load_for_change().unwrap();
    let text = DirectFile::planned_text(held.loaded.as_ref(), &ours()).unwrap();

    // As config management writes files: a new file renamed over the old one.
    let changed = fixture("firewalld-grouped.xml");
    let other = dir.path().join("other");
    fs::write(&other, &changed).unwrap();
    fs::rename(&other, file.path()).unwrap();
    let committed = file.stage(&text, &held).unwrap().commit().unwrap();
    assert_eq!(committed, Committed::Interfered);
    assert_eq!(fs::read_to_string(file.path()).unwrap(), changed);
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["direct.xml".to_string()])
    );
}

/// Another process that opens direct.xml for writing after it was read for a change (as
/// `firewall-offline-cmd` does) waits for the reader's lease; the write of ours is called
/// off and the other process's write lands in direct.xml once the lease is given up.
#[test]
fn a_write_by_another_process_after_the_read_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    fs::write(file.path(), fixture("firewalld-written.xml")).unwrap();
    let held = file.load_for_change().unwrap();
    let text = DirectFile::planned_text(held.loaded.as_ref(), &ours()).unwrap();
    let staged = file.stage(&text, &held).unwrap();

    let changed = fixture("firewalld-grouped.xml");
    let source = dir.path().join("source");
    fs::write(&source, &changed).unwrap();
    // `cp` opens the target for writing (O_TRUNC), as firewalld's writer does.
    let mut writer = std::process::Command::new("cp")
        .arg(&source)
        .arg(file.path())
        .spawn()
        .unwrap();
    let wchan = format!("/proc/{}/wchan", writer.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs::read_to_string(&wchan).unwrap_or_default() != "__break_lease" {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never waited for the lease"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    assert_eq!(staged.commit().unwrap(), Committed::Interfered);
    drop(held);
    assert!(writer.wait().unwrap().success());
    assert_eq!(fs::read_to_string(file.path()).unwrap(), changed);
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["direct.xml".to_string(), "source".to_string()])
    );
}

#[test]
fn malformed_text_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    let good = fixture("firewalld-written.xml");
    fs::write(file.path(), &good).unwrap();
    let held = file.load_for_change().unwrap();

    let message = format!(
        "{:#}",
        write_with(&file, &held, "<direct>\n  <chain/>\n</direct>\n").unwrap_err()
    );
    assert!(message.contains("line 2, column 3"), "{message}");
    // The file read with a bad entry added at its end, as an edit of ours would add one
    // (only the end is read again, but the error has its true place).
    let edited = good.replace(
        "</direct>",
        "  <chain ipv=\"ipv4\" table=\"filter\"/>\n</direct>",
    );
    let message = format!("{:#}", write_with(&file, &held, &edited).unwrap_err());
    assert!(
        message.contains("line 15, column 3: chain: missing attribute chain"),
        "{message}"
    );
    assert_eq!(fs::read_to_string(file.path()).unwrap(), good);
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["direct.xml".to_string()])
    );
}

#[test]
fn a_symlink_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere.xml");
    let good = fixture("firewalld-written.xml");
    fs::write(&target, &good).unwrap();
    let file = DirectFile::in_dir(dir.path());
    symlink(&target, file.path()).unwrap();
    let before = listing(dir.path());

    let message = format!("{:#}", file.load().unwrap_err());
    assert!(message.contains("symbolic link"), "{message}");
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );

    let message = format!("{:#}", write(&file, &render(&ours())).unwrap_err());
    assert!(message.contains("symbolic link"), "{message}");

    assert!(fs::symlink_metadata(file.path())
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_link(file.path()).unwrap(), target);
    assert_eq!(fs::read_to_string(&target).unwrap(), good);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn other_unreadable_files_are_refused() {
    // A directory where the file should be.
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    fs::create_dir(file.path()).unwrap();
    let message = format!("{:#}", file.load().unwrap_err());
    assert!(message.contains("not a regular file"), "{message}");

    // Not UTF-8.
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    fs::write(file.path(), b"<direct>\xff</direct>").unwrap();
    let message = format!("{:#}", file.load().unwrap_err());
    assert!(message.contains("not valid UTF-8"), "{message}");
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn an_oversized_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    let handle = fs::File::create(file.path()).unwrap();
    handle.set_len(MAX_SIZE + 1).unwrap();
    let message = format!("{:#}", file.load().unwrap_err());
    assert!(message.contains("larger than 16 MiB"), "{message}");
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );
    assert_eq!(fs::metadata(file.path()).unwrap().len(), MAX_SIZE + 1);
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["direct.xml".to_string()])
    );
}

#[test]
fn a_failed_write_leaves_the_file_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectFile::in_dir(dir.path());
    let good = fixture("firewalld-written.xml");
    fs::write(file.path(), &good).unwrap();
    // The backup cannot be renamed over a non-empty directory.
    let old = dir.path().join("direct.xml.old");
    fs::create_dir(&old).unwrap();
    fs::write(old.join("keep"), "x").unwrap();
    let before = listing(dir.path());

    let held = file.load_for_change().unwrap();
    let text = DirectFile::planned_text(held.loaded.as_ref(), &ours()).unwrap();
    let message = format!("{:#}", write_with(&file, &held, &text).unwrap_err());
    assert!(message.contains("direct.xml.old"), "{message}");

    assert_eq!(fs::read_to_string(file.path()).unwrap(), good);
    assert_eq!(listing(dir.path()), before);
    assert_eq!(listing(&old), BTreeSet::from(["keep".to_string()]));
}
