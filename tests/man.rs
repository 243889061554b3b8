//! The man pages in man/ and the shell completions in completions/ are generated from the
//! same CLI definition that parses the flags; these tests fail when they are stale.
//! Regenerate with `UPDATE_EXPECTED=1 cargo test --test man`.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use tproxy_firewalld::cli::{manual_sections, Cli};

/// The page clap_mangen renders, with our EXAMPLES, FILES, EXIT STATUS and ENVIRONMENT sections in place
/// of its EXTRA section (the `--help` epilogue).
fn render(command: clap::Command, sections_of: &str) -> String {
    let man = clap_mangen::Man::new(command.clone()).section("8");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    if command.has_subcommands() {
        man.render_subcommands_section(&mut out).unwrap();
    }
    let sections = manual_sections(sections_of);
    let mut roff = String::new();
    for (title, items) in [
        ("EXAMPLES", sections.examples),
        ("FILES", sections.files),
        ("EXIT STATUS", sections.exit_status),
        ("ENVIRONMENT", sections.environment),
    ] {
        if items.is_empty() {
            continue;
        }
        roff.push_str(&format!(".SH \"{title}\"\n"));
        for (term, text) in items {
            roff.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                escape(term),
                escape(text)
            ));
        }
    }
    out.extend_from_slice(roff.as_bytes());
    if command.get_version().is_some() {
        man.render_version_section(&mut out).unwrap();
    }
    String::from_utf8(out).unwrap()
}

/// roff: backslashes doubled, a leading dot or quote protected, dashes kept literal.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

fn check(dir: &str, file: &str, text: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let path = dir.join(file);
    if std::env::var("UPDATE_EXPECTED").as_deref() == Ok("1") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is stale: run UPDATE_EXPECTED=1 cargo test --test man",
        path.display()
    );
}

#[test]
fn man_pages_are_current() {
    let root = Cli::command();
    check("man", "tproxy-firewalld.8", &render(root.clone(), ""));
    for sub in root.get_subcommands() {
        // clap names are 'static; leaking a few short strings in a test is fine.
        let name: &'static str = format!("tproxy-firewalld-{}", sub.get_name()).leak();
        let bin_name = format!("tproxy-firewalld {}", sub.get_name());
        let page = render(sub.clone().name(name).bin_name(bin_name), sub.get_name());
        for section in ["EXAMPLES", "FILES", "EXIT STATUS"] {
            assert!(
                page.contains(&format!(".SH \"{section}\"")),
                "{name}: {section}"
            );
        }
        check("man", &format!("{name}.8"), &page);
    }
}

#[test]
fn completions_are_current() {
    for (shell, file) in [
        (Shell::Bash, "tproxy-firewalld.bash"),
        (Shell::Zsh, "_tproxy-firewalld"),
        (Shell::Fish, "tproxy-firewalld.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "tproxy-firewalld", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("uninstall") && text.contains("--store-firewalld"));
        check("completions", file, &text);
    }
}
