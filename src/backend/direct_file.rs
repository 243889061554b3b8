//! firewalld's `direct.xml` on disk: read it carefully, replace it atomically.
//!
//! firewalld itself rewrites the file in place (truncate, then write) after copying it to
//! `direct.xml.old`. We keep the `.old` copy but write both files through a temporary file
//! in the same directory that is fsynced and renamed over the target, so a crash leaves
//! either the old or the new file, never a truncated one.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use tempfile::NamedTempFile;

use crate::direct::DirectConfig;
use crate::format::direct_xml::{self, Document};

/// Files larger than this are refused: a real direct.xml has at most a few hundred lines.
pub const MAX_SIZE: u64 = 16 * 1024 * 1024;

/// Mode of a direct.xml we create (what firewalld gets with the usual umask).
const NEW_FILE_MODE: u32 = 0o644;

/// Mode of the configuration directory when we have to create it (firewalld's too).
const NEW_DIR_MODE: u32 = 0o750;

pub struct DirectFile {
    path: PathBuf,
}

/// The file as it was read.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub text: String,
    pub document: Document,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl DirectFile {
    /// `<config_dir>/direct.xml`.
    pub fn in_dir(config_dir: &Path) -> Self {
        Self {
            path: config_dir.join("direct.xml"),
        }
    }

    /// A direct.xml at any path (`translate --merge`, `inspect --file`).
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current file, or None when there is none. Refuses (with the path in the message)
    /// a file that cannot be read, is not a regular file (a symbolic link included), is
    /// larger than [`MAX_SIZE`], is not UTF-8 or is malformed ("line L, column C: ...").
    pub fn load(&self) -> Result<Option<Loaded>> {
        let path = self.path.display();
        let Some((bytes, metadata)) = read_regular(&self.path)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{path} is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        let document =
            direct_xml::parse(&text).map_err(|e| anyhow::anyhow!("{path} is malformed: {e}"))?;
        Ok(Some(Loaded {
            text,
            document,
            mode: metadata.mode() & 0o7777,
        }))
    }

    /// The text the file would have with `desired` as our entries (foreign content kept), or
    /// None when nothing would change; without a file and without desired entries no file
    /// is created.
    pub fn planned_text(loaded: Option<&Loaded>, desired: &DirectConfig) -> Option<String> {
        match loaded {
            Some(loaded) => {
                let text = loaded.document.with_owned(desired);
                (text != loaded.text).then_some(text)
            }
            None if desired.is_empty() => None,
            None => Some(direct_xml::render(desired)),
        }
    }

    /// Replaces the file with `text` atomically. `previous` is the file as it was read
    /// (None: not read, or there was none); when given, the file must still hold exactly
    /// that text, else nothing is written. The current file is first copied to
    /// `direct.xml.old` (atomically too), as firewalld does; the new file keeps the current
    /// file's mode and owner (0644 for a new file). `text` must parse: a malformed file is
    /// never written. Creates the directory with mode 0750 when it is missing. On error
    /// direct.xml is left as it was and no temporary file remains.
    pub fn write(&self, text: &str, previous: Option<&Loaded>) -> Result<()> {
        self.stage(text, previous, true)?.commit()
    }

    /// Like [`DirectFile::write`], but direct.xml.old is left as it is: after firewalld's
    /// own `update` it already holds the operator's file, which is the backup to keep.
    pub fn write_keeping_old(&self, text: &str, previous: Option<&Loaded>) -> Result<()> {
        self.stage(text, previous, false)?.commit()
    }

    /// The first half of [`DirectFile::write`] (`backup`: with direct.xml.old): every check,
    /// and the new file (and backup) written and synced beside direct.xml, which is left as
    /// it is until [`Staged::commit`].
    pub fn stage(&self, text: &str, previous: Option<&Loaded>, backup: bool) -> Result<Staged<'_>> {
        let path = self.path.display();
        // A new version of the file read is checked from its first change on (the same
        // verdict as parsing it all).
        let parses = match previous {
            Some(previous) => previous.document.check_successor(text),
            None => direct_xml::parse(text).map(|_| ()),
        };
        if let Err(e) = parses {
            bail!("refusing to write {path}: the new text would be malformed: {e}");
        }
        let dir = self.dir();
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(NEW_DIR_MODE)
                .create(dir)
                .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(NEW_DIR_MODE)))
                .with_context(|| format!("creating {}", dir.display()))?;
        }

        let current = read_regular(&self.path)?;
        if let Some(previous) = previous {
            let unchanged = current
                .as_ref()
                .is_some_and(|(bytes, _)| bytes == previous.text.as_bytes());
            if !unchanged {
                bail!("{path} changed since it was read; nothing was written");
            }
        }
        let Some((bytes, metadata)) = &current else {
            let new = self
                .staged_copy(text.as_bytes(), NEW_FILE_MODE, None)
                .with_context(|| format!("creating {path}"))?;
            return Ok(Staged {
                file: self,
                seen: None,
                backup: None,
                new,
            });
        };
        let mode = metadata.mode() & 0o7777;
        // Both copies at once: each ends in an fsync, a wait on the disk.
        let (backup, new) = std::thread::scope(|scope| {
            let backup = backup.then(|| {
                scope.spawn(|| {
                    self.staged_copy(bytes, mode, Some(metadata))
                        .with_context(|| {
                            format!("backing up {path} to {}", self.old_path().display())
                        })
                })
            });
            let new = self
                .staged_copy(text.as_bytes(), mode, Some(metadata))
                .with_context(|| format!("replacing {path}"));
            let backup = backup.map(|b| {
                b.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("backing up {path} failed")))
            });
            (backup.transpose(), new)
        });
        Ok(Staged {
            file: self,
            seen: Some(FileIdentity::of(metadata)),
            backup: backup?,
            new: new?,
        })
    }

    /// `direct.xml.old`, firewalld's backup of the previous file.
    pub fn old_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".old");
        PathBuf::from(name)
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// Writes `bytes` to a new temporary file in the directory (O_EXCL, O_NOFOLLOW), syncs
    /// it and gives it `mode` (and `like`'s owner). The temporary file is removed on any
    /// error, and when the result is dropped.
    fn staged_copy(
        &self,
        bytes: &[u8],
        mode: u32,
        like: Option<&Metadata>,
    ) -> Result<NamedTempFile> {
        let temp = tempfile::Builder::new()
            .prefix(".direct.xml.")
            .make_in(self.dir(), |path| {
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
}

/// A new direct.xml (and backup) synced beside the file, not yet in place. Dropping it
/// removes them.
pub struct Staged<'a> {
    file: &'a DirectFile,
    /// The file as it was when the copies were made; None: there was none.
    seen: Option<FileIdentity>,
    backup: Option<NamedTempFile>,
    new: NamedTempFile,
}

impl Staged<'_> {
    /// Puts the copies in place: the backup first, then direct.xml (each a rename), then
    /// syncs the directory. Refuses, writing nothing, when direct.xml changed since staging.
    pub fn commit(self) -> Result<()> {
        let file = self.file;
        let path = file.path.display();
        let now = fs::symlink_metadata(&file.path).ok();
        if now.as_ref().map(FileIdentity::of) != self.seen {
            bail!("{path} changed since it was read; nothing was written");
        }
        if let Some(backup) = self.backup {
            let old = file.old_path();
            backup
                .persist(&old)
                .map_err(|e| e.error)
                .with_context(|| format!("backing up {path} to {}", old.display()))?;
        }
        self.new
            .persist(&file.path)
            .map_err(|e| e.error)
            .with_context(|| format!("replacing {path}"))?;
        let dir = file.dir();
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
        Ok(())
    }
}

/// Enough of a file's metadata to tell that it was replaced or written since.
#[derive(Debug, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
}

impl FileIdentity {
    fn of(metadata: &Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
        }
    }
}

/// The bytes and metadata of a regular file at `path`, None when there is nothing there.
fn read_regular(path: &Path) -> Result<Option<(Vec<u8>, Metadata)>> {
    let shown = path.display();
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {shown}")),
    };
    if metadata.file_type().is_symlink() {
        bail!("{shown} is a symbolic link; refusing to follow it");
    }
    if !metadata.is_file() {
        bail!("{shown} is not a regular file");
    }
    // O_NOFOLLOW: it may have been replaced by a link since; fstat again for the same reason.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("reading {shown}"))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("reading {shown}"))?;
    if !metadata.is_file() {
        bail!("{shown} is not a regular file");
    }
    if metadata.len() > MAX_SIZE {
        bail!(
            "{shown} is larger than {} MiB ({} bytes); refusing to read it",
            MAX_SIZE / 1024 / 1024,
            metadata.len()
        );
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {shown}"))?;
    if bytes.len() as u64 > MAX_SIZE {
        bail!(
            "{shown} is larger than {} MiB; refusing to read it",
            MAX_SIZE / 1024 / 1024
        );
    }
    Ok(Some((bytes, metadata)))
}
