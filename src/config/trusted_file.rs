//! Whether only root can change a config file. The config decides who bypasses the proxy
//! (the kuma-dp UID, excluded ports and addresses), so a root run that changes the firewall
//! refuses, as sshd's StrictModes does, a file another user could write or replace: the file,
//! every directory on its path and every symbolic link followed must be owned by root, and
//! none may be group- or world-writable, except a directory with the sticky bit (where only
//! an entry's owner can replace it).

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The same bound on links followed as the kernel's (ELOOP).
const MAX_LINKS: usize = 40;
const GROUP_OR_WORLD_WRITABLE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Opens `path` after checking that only root could have written or placed it; the error
/// names what another user could change and how to fix it.
pub fn open(path: &Path) -> Result<File, String> {
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let opened = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    let placed = resolve(path)?;
    if (opened.dev(), opened.ino()) != (placed.dev(), placed.ino()) {
        return Err("changed while it was being checked; run again".to_string());
    }
    if opened.uid() != 0 {
        return Err(format!(
            "owned by UID {}, and root changes the firewall only from a config no other user can change: chown root {}",
            opened.uid(),
            path.display()
        ));
    }
    if opened.mode() & GROUP_OR_WORLD_WRITABLE != 0 {
        return Err(format!(
            "group- or world-writable (mode {:04o}), and root changes the firewall only from a config no other user can change: chmod go-w {}",
            opened.mode() & 0o7777,
            path.display()
        ));
    }
    Ok(file)
}

/// Walks `path` from `/` as the kernel would, checking each directory and link on the way;
/// returns the metadata of the entry it names.
fn resolve(path: &Path) -> Result<Metadata, String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve: {e}"))?
            .join(path)
    };
    // Names still to walk, the next one last.
    let mut pending = names(&absolute);
    let mut here = PathBuf::from("/");
    check_directory(&here, &metadata(&here)?)?;
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            here.pop();
            continue;
        }
        let entry = here.join(&name);
        let found = metadata(&entry)?;
        if found.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(format!(
                    "cannot resolve: more than {MAX_LINKS} symbolic links"
                ));
            }
            if found.uid() != 0 {
                return Err(format!(
                    "the symbolic link {} is owned by UID {}, who could point it elsewhere: keep the file where only root can change it (such as /etc/tproxy-firewalld)",
                    entry.display(),
                    found.uid()
                ));
            }
            let target = std::fs::read_link(&entry).map_err(|e| cannot(&entry, e))?;
            if target.is_absolute() {
                here = PathBuf::from("/");
            }
            pending.extend(names(&target));
        } else if pending.is_empty() {
            return Ok(found);
        } else {
            check_directory(&entry, &found)?;
            here = entry;
        }
    }
    // The path named a directory (`/`, or one ending in `..`): reading it fails later.
    metadata(&here)
}

/// The names of `path`'s components, last first (`.` dropped, `..` kept).
fn names(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    names.reverse();
    names
}

fn metadata(path: &Path) -> Result<Metadata, String> {
    std::fs::symlink_metadata(path).map_err(|e| cannot(path, e))
}

fn cannot(path: &Path, error: io::Error) -> String {
    format!("cannot resolve {}: {error}", path.display())
}

fn check_directory(dir: &Path, found: &Metadata) -> Result<(), String> {
    if !found.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if found.uid() != 0 {
        return Err(format!(
            "the directory {} is owned by UID {}, who could replace the file: keep it in a directory only root can change (such as /etc/tproxy-firewalld)",
            dir.display(),
            found.uid()
        ));
    }
    let mode = found.mode();
    if mode & GROUP_OR_WORLD_WRITABLE != 0 && mode & STICKY == 0 {
        return Err(format!(
            "the directory {} is group- or world-writable without the sticky bit (mode {:04o}), so another user could replace the file: chmod go-w {}, or keep the file in /etc/tproxy-firewalld",
            dir.display(),
            mode & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}
