//! The man pages in man/ are generated from the same CLI definition that parses the flags;
//! this test fails when they are stale. Regenerate with `UPDATE_EXPECTED=1 cargo test --test man`.

use std::path::Path;

use clap::CommandFactory;
use tproxy_firewalld::cli::Cli;

fn render(command: clap::Command) -> String {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .section("8")
        .render(&mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn man_pages_are_current() {
    let root = Cli::command();
    let mut pages = vec![("tproxy-firewalld.8".to_string(), render(root.clone()))];
    for sub in root.get_subcommands() {
        // clap names are 'static; leaking two short strings in a test is fine.
        let name: &'static str = format!("tproxy-firewalld-{}", sub.get_name()).leak();
        let bin_name = format!("tproxy-firewalld {}", sub.get_name());
        let page = render(sub.clone().name(name).bin_name(bin_name));
        pages.push((format!("{name}.8"), page));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for (file, text) in pages {
        let path = dir.join(&file);
        if std::env::var("UPDATE_EXPECTED").as_deref() == Ok("1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "man/{file} is stale: run UPDATE_EXPECTED=1 cargo test --test man"
        );
    }
}
