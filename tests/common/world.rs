//! A snapshot of what a run could change: the kernel tables of both families and every file
//! of the sandbox, compared before and after to show that nothing changed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::Sandbox;

/// One directory entry, without following symbolic links. Contents are compared for
/// files up to 1 MiB; larger ones by size, inode and change times.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    File {
        len: u64,
        mode: u32,
        uid: u32,
        inode: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
        bytes: Option<Vec<u8>>,
    },
    Link(PathBuf),
    Dir(u32),
    Other(u32),
}

pub fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let relative = path.strip_prefix(root).unwrap().to_path_buf();
        let node = if meta.file_type().is_symlink() {
            Node::Link(std::fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            walk(root, &path, out);
            Node::Dir(meta.mode())
        } else if meta.is_file() {
            Node::File {
                len: meta.len(),
                mode: meta.mode(),
                uid: meta.uid(),
                inode: meta.ino(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
                bytes: (meta.len() <= 1 << 20).then(|| std::fs::read(&path).unwrap()),
            }
        } else {
            Node::Other(meta.mode())
        };
        out.insert(relative, node);
    }
}

/// The kernel tables of both families and every file of the sandbox.
#[derive(Debug, PartialEq, Eq)]
pub struct World {
    iptables: String,
    ip6tables: String,
    files: BTreeMap<PathBuf, Node>,
}

pub fn world(sandbox: &Sandbox) -> World {
    World {
        iptables: sandbox.save("iptables-save"),
        ip6tables: sandbox.save("ip6tables-save"),
        files: tree(sandbox.dir.path()),
    }
}

pub fn assert_same_world(what: &str, before: &World, after: &World) {
    assert_eq!(
        before.iptables, after.iptables,
        "{what}: the IPv4 tables changed"
    );
    assert_eq!(
        before.ip6tables, after.ip6tables,
        "{what}: the IPv6 tables changed"
    );
    if before.files != after.files {
        let changed: Vec<&PathBuf> = before
            .files
            .keys()
            .chain(after.files.keys())
            .filter(|k| before.files.get(*k) != after.files.get(*k))
            .collect();
        panic!("{what}: files changed: {changed:?}");
    }
}
