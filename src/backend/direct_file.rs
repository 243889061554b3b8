//! firewalld's `direct.xml` on disk: read it carefully, replace it atomically, and never
//! over another process's write.
//!
//! firewalld itself rewrites the file in place (truncate, then write) after copying it to
//! `direct.xml.old`. We keep the previous file as `.old` too, but write the new one to a
//! temporary file in the same directory that is fsynced and swapped in, so a crash leaves
//! either the old or the new file, never a truncated one; and a write another process
//! (`firewall-offline-cmd`, an editor, config management) makes after we read the file is
//! noticed and left in place, for the caller to read and plan again ([`Staged::commit`]).

use std::fs::{self, DirBuilder, File, Metadata};
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use nix::sys::signal::{self, SigHandler, Signal};
use tempfile::NamedTempFile;

use crate::direct::DirectConfig;
use crate::format::direct_xml::{self, Document};
use crate::system;

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
        Ok(self.read(false)?.loaded)
    }

    /// Like [`DirectFile::load`], for a change: the file is read under a lease, so that any
    /// other process opening it for writing from now on is noticed (see [`Staged::commit`]).
    /// Waits while another process has it open for writing.
    pub fn load_for_change(&self) -> Result<Held> {
        self.read(true)
    }

    fn read(&self, leased: bool) -> Result<Held> {
        let path = self.path.display();
        let Some(read) = read_regular(&self.path, leased)? else {
            return Ok(Held::default());
        };
        let text = String::from_utf8(read.bytes).map_err(|e| {
            anyhow::anyhow!(
                "{path} is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        let document =
            direct_xml::parse(&text).map_err(|e| anyhow::anyhow!("{path} is malformed: {e}"))?;
        Ok(Held {
            loaded: Some(Loaded {
                text,
                document,
                mode: read.metadata.mode() & 0o7777,
            }),
            seen: Some((FileIdentity::of(&read.metadata), read.metadata)),
            lease: read.lease,
        })
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

    /// The first half of replacing the file read into `held` with `text`: every check, and
    /// the new file written and synced beside direct.xml, which is left as it is until
    /// [`Staged::commit`]. The new file keeps the current file's mode and owner (0644 for a
    /// new file). `text` must parse: a malformed file is never written. Creates the
    /// directory with mode 0750 when it is missing. On error no temporary file remains.
    pub fn stage<'a>(&'a self, text: &str, held: &'a Held) -> Result<Staged<'a>> {
        let path = self.path.display();
        // A new version of the file read is checked from its first change on (the same
        // verdict as parsing it all).
        let parses = match &held.loaded {
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
        let (mode, like) = match &held.seen {
            Some((_, metadata)) => (metadata.mode() & 0o7777, Some(metadata)),
            None => (NEW_FILE_MODE, None),
        };
        let new = system::fs::staged(self.dir(), ".direct.xml.", text.as_bytes(), mode, like)
            .with_context(|| format!("replacing {path}"))?;
        Ok(Staged {
            file: self,
            held,
            new,
        })
    }

    /// `direct.xml.old`, firewalld's backup of the previous file.
    pub fn old_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".old");
        PathBuf::from(name)
    }

    fn dir(&self) -> &Path {
        system::fs::parent(&self.path)
    }
}

/// direct.xml as read for a change, and what tells whether another process wrote it since.
#[derive(Default)]
pub struct Held {
    /// None: there was no file.
    pub loaded: Option<Loaded>,
    /// The file read, as it was read.
    seen: Option<(FileIdentity, Metadata)>,
    /// A read lease on the file read (see [`Lease`]); None when read without one.
    lease: Option<Lease>,
}

impl From<Option<Loaded>> for Held {
    /// A file read without a lease: fine to plan from, not to change.
    fn from(loaded: Option<Loaded>) -> Held {
        Held {
            loaded,
            seen: None,
            lease: None,
        }
    }
}

impl Held {
    /// Another process opened the file read for writing (or the read took no lease).
    fn written(&self) -> bool {
        self.lease.as_ref().is_none_or(Lease::broken)
    }
}

/// What [`Staged::commit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// direct.xml holds the new text, and the file it replaced is direct.xml.old.
    Done,
    /// Another process wrote or replaced direct.xml after it was read: it is left as that
    /// process leaves it. Read it again and plan again.
    Interfered,
}

/// A new direct.xml synced beside the file, not yet in place. Dropping it removes it.
pub struct Staged<'a> {
    file: &'a DirectFile,
    held: &'a Held,
    new: NamedTempFile,
}

impl Staged<'_> {
    /// Puts the new file in place, the file it replaces becoming direct.xml.old, unless
    /// another process wrote direct.xml since it was read.
    ///
    /// Writers that rewrite the file in place (firewalld, `firewall-offline-cmd`) open it
    /// for writing first, which breaks the read lease taken when it was read: the kernel
    /// holds their open until the lease is given up. Writers that rename a file over it
    /// replace the inode. The new file is swapped in atomically (`RENAME_EXCHANGE`), so the
    /// file it displaced can be looked at: when it is not the one read, or the lease broke,
    /// the two are swapped back, and the other process's write lands in the file at
    /// direct.xml as it meant to.
    pub fn commit(self) -> Result<Committed> {
        let Staged { file, held, new } = self;
        let (_, temp) = new
            .keep()
            .map_err(|e| e.error)
            .with_context(|| format!("replacing {}", file.path.display()))?;
        let result = put_in_place(file, held, &temp);
        if !matches!(result, Ok(Committed::Done)) {
            // It holds the new text again, or nothing: the displaced file is back in place.
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// [`Staged::commit`] once the new file is at `temp` and no longer removed on drop.
fn put_in_place(file: &DirectFile, held: &Held, temp: &Path) -> Result<Committed> {
    let path = file.path.display();
    let Some((seen, _)) = &held.seen else {
        // There was no file: only create one if there still is none.
        return match rename(temp, &file.path, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => file.sync_dir().map(|()| Committed::Done),
            Err(Errno::EEXIST) => Ok(Committed::Interfered),
            Err(e) => Err(e).with_context(|| format!("creating {path}")),
        };
    };
    if held.written() {
        return Ok(Committed::Interfered);
    }
    let swap = |a: &Path, b: &Path| {
        rename(a, b, RenameFlags::RENAME_EXCHANGE).with_context(|| format!("replacing {path}"))
    };
    swap(temp, &file.path)?;
    let displaced = fs::symlink_metadata(temp).ok();
    if displaced.as_ref().map(FileIdentity::of).as_ref() != Some(seen) || held.written() {
        swap(temp, &file.path)?;
        return Ok(Committed::Interfered);
    }
    let old = file.old_path();
    if let Err(error) = fs::rename(temp, &old) {
        swap(temp, &file.path)?;
        return Err(error).with_context(|| format!("backing up {path} to {}", old.display()));
    }
    file.sync_dir()?;
    // An open that found the old file just before the swap reaches the lease only now.
    if held.written() {
        swap(&old, &file.path)?;
        return Ok(Committed::Interfered);
    }
    Ok(Committed::Done)
}

impl DirectFile {
    fn sync_dir(&self) -> Result<()> {
        system::fs::sync_dir(self.dir())
    }
}

/// `renameat2` relative to the working directory.
fn rename(from: &Path, to: &Path, flags: RenameFlags) -> nix::Result<()> {
    renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)
}

/// A read lease (`F_SETLEASE`, `F_RDLCK`) on an open file. While it is held, another
/// process's open of the file for writing (or truncation) waits, for up to
/// `/proc/sys/fs/lease-break-time` seconds, and [`Lease::broken`] says so; giving the lease
/// up (dropping it) lets that process go on.
struct Lease {
    file: File,
}

/// How long to wait for another process to close the file it has open for writing.
const LEASE_PATIENCE: Duration = Duration::from_secs(5);

impl Lease {
    fn take(file: File, path: &Path) -> Result<Lease> {
        // The kernel tells the holder of a lease that breaks with SIGIO, whose default
        // action ends the process; the lease's state is read instead (Lease::broken).
        static IGNORE_SIGIO: Once = Once::new();
        IGNORE_SIGIO.call_once(|| {
            // SAFETY: ignoring a signal installs no handler.
            let _ = unsafe { signal::signal(Signal::SIGIO, SigHandler::SigIgn) };
        });
        let deadline = Instant::now() + LEASE_PATIENCE;
        loop {
            // SAFETY: fcntl on a descriptor we own, with an integer argument.
            let taken = Errno::result(unsafe {
                nix::libc::fcntl(file.as_raw_fd(), nix::libc::F_SETLEASE, nix::libc::F_RDLCK)
            });
            match taken {
                Ok(_) => return Ok(Lease { file }),
                Err(Errno::EAGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(Errno::EAGAIN) => bail!(
                    "{} has been open for writing by another process for {} s; nothing was changed",
                    path.display(),
                    LEASE_PATIENCE.as_secs()
                ),
                Err(e) => bail!(
                    "cannot take a lease on {} ({e}), which is how a write by another process at the same time is noticed; nothing was changed",
                    path.display()
                ),
            }
        }
    }

    /// Another process asked to open the file for writing since the lease was taken.
    fn broken(&self) -> bool {
        // SAFETY: fcntl on a descriptor we own, without an argument.
        let lease = unsafe { nix::libc::fcntl(self.file.as_raw_fd(), nix::libc::F_GETLEASE) };
        lease != nix::libc::F_RDLCK
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: as in Lease::take. Closing the file would give it up too.
        unsafe {
            nix::libc::fcntl(
                self.file.as_raw_fd(),
                nix::libc::F_SETLEASE,
                nix::libc::F_UNLCK,
            )
        };
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

/// A regular file's bytes and metadata, read (under a lease when asked for).
struct Read {
    bytes: Vec<u8>,
    metadata: Metadata,
    lease: Option<Lease>,
}

/// The regular file at `path`, None when there is nothing there. With `leased`, the lease
/// is taken before the file is read, so that no write after the read goes unnoticed.
fn read_regular(path: &Path, leased: bool) -> Result<Option<Read>> {
    let shown = path.display();
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {shown}")),
    };
    if metadata.file_type().is_symlink() {
        bail!("{shown} is a symbolic link; refusing to follow it");
    }
    // It may have been replaced by a link since: opened without following one.
    let (file, metadata) = system::fs::open_regular(path, false).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => anyhow::anyhow!("{shown} is not a regular file"),
        _ => anyhow::Error::new(e).context(format!("reading {shown}")),
    })?;
    // The lease holds the same open file, through a second descriptor.
    let mut lease = if leased {
        let fd = file
            .try_clone()
            .with_context(|| format!("reading {shown}"))?;
        Some(Lease::take(fd, path)?)
    } else {
        None
    };
    let too_large = || {
        anyhow::anyhow!(
            "{shown} is larger than {}; refusing to read it",
            system::fs::size(MAX_SIZE)
        )
    };
    if metadata.len() > MAX_SIZE {
        return Err(too_large());
    }
    let bytes = system::fs::read_at_most(&file, MAX_SIZE).map_err(|e| match e.kind() {
        io::ErrorKind::FileTooLarge => too_large(),
        _ => anyhow::Error::new(e).context(format!("reading {shown}")),
    })?;
    Ok(Some(Read {
        bytes,
        metadata,
        lease: lease.take(),
    }))
}
