//! Files: reading at most what a sane file holds, and replacing a file so that a crash leaves
//! either the old or the new one, never a part of either.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, Result};
use tempfile::NamedTempFile;

/// All of `input`, or an error of kind [`io::ErrorKind::FileTooLarge`] past `limit` bytes
/// (an endless input such as `/dev/zero` is refused rather than filling the memory).
pub fn read_at_most(input: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {}", size(limit)),
        ));
    }
    Ok(bytes)
}

/// `limit` bytes, said for people: `16 MiB`, `1048576 bytes`.
pub fn size(limit: u64) -> String {
    if limit >= 1024 * 1024 && limit % (1024 * 1024) == 0 {
        format!("{} MiB", limit / 1024 / 1024)
    } else {
        format!("{limit} bytes")
    }
}

/// Opens the regular file at `path` for reading, with its metadata as of the open; never
/// blocking on a FIFO, and not following a symbolic link unless `follow_links` (the open
/// then fails with `ELOOP`). Anything but a regular file is an error of kind
/// [`io::ErrorKind::InvalidInput`].
pub fn open_regular(path: &Path, follow_links: bool) -> io::Result<(File, Metadata)> {
    let mut flags = nix::libc::O_NONBLOCK;
    if !follow_links {
        flags |= nix::libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, metadata))
}

/// Writes `bytes` to a new temporary file in `dir` named `prefix` and six random letters
/// (O_EXCL, O_NOFOLLOW), gives it `mode` and `like`'s owner, and syncs it: ready to be put
/// in place with a rename. Removed on any error, and when dropped.
pub fn staged(
    dir: &Path,
    prefix: &str,
    bytes: &[u8],
    mode: u32,
    like: Option<&Metadata>,
) -> Result<NamedTempFile> {
    let temp = tempfile::Builder::new()
        .prefix(prefix)
        .make_in(dir, |path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
                .open(path)
        })
        .context("creating a temporary file")?;
    let mut file = temp.as_file();
    file.write_all(bytes)?;
    if let Some(like) = like {
        let own = file.metadata()?;
        if own.uid() != like.uid() || own.gid() != like.gid() {
            std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid()))
                .context("giving the new file the owner of the old one")?;
        }
    }
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()?;
    Ok(temp)
}

/// Replaces the file at `path` with `bytes` atomically: a synced temporary file (`prefix`)
/// beside it, renamed over it, then the directory synced. The file keeps its mode and owner;
/// a new one gets `new_mode`.
pub fn replace(path: &Path, prefix: &str, bytes: &[u8], new_mode: u32) -> Result<()> {
    let dir = parent(path);
    let current = fs::symlink_metadata(path).ok();
    let mode = current.as_ref().map_or(new_mode, |m| m.mode() & 0o7777);
    let temp = staged(dir, prefix, bytes, mode, current.as_ref())
        .with_context(|| format!("replacing {}", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    sync_dir(dir)
}

/// Syncs `dir`, so that a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// The directory `path` is in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_stops_past_the_limit() {
        assert_eq!(read_at_most(&b"abc"[..], 3).unwrap(), b"abc");
        let error = read_at_most(io::repeat(0), 16).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(error.to_string(), "larger than 16 bytes");
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_given_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        replace(&path, ".f.", b"one", 0o640).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&path), 0o640);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        replace(&path, ".f.", b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
