//! One `install` or `uninstall` at a time on a host, in the order they started.
//!
//! A run that changes the firewall (install and uninstall; not dry runs, `inspect`, `status`
//! or `translate`) holds an exclusive `flock` on [`LOCK_FILE`] while it works; the file holds
//! that run's pid. The kernel drops the lock when its holder exits or is killed, so a crashed
//! run never blocks the next one.
//!
//! `flock` wakes its waiters in no particular order, so runs also queue, for "the last request
//! wins": each takes a ticket, a file in [`QUEUE_DIR`] named `<number>.<pid>` (one more than
//! the highest number there) that it keeps locked for its whole life, and tries the lock file
//! only once no live ticket is ahead of its own. A ticket is created and locked as
//! `.<pid>.new` and then linked under its name, so it is locked from the moment it can be
//! seen; one whose lock can be taken belongs to a run that is gone and is removed (so is a
//! `.<pid>.new` file). The queue only decides the order; exclusion comes from the lock file
//! alone, which other tools may take too (`flock /run/tproxy-firewalld.lock CMD` keeps runs
//! out while CMD runs).
//!
//! A run that has to wait says so once on stderr ("waiting for another tproxy-firewalld run
//! (pid N) to finish …") and gives up after the lock timeout (60 s; the environment variable
//! `TPROXY_FIREWALLD_LOCK_TIMEOUT` sets it, in whole seconds) with exit status 1, having
//! changed nothing.
//! `--dry-run` takes no lock; a dry run asked for in a config file or the environment does
//! (the configuration is read after the lock is taken).
//!
//! Under the lock no other run of ours is writing, so temporary files a killed run left next
//! to `direct.xml` or `firewalld.conf` are removed before the work starts.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::{host, notice, Code};

/// The lock a run holds while it changes the firewall.
pub const LOCK_FILE: &str = "/run/tproxy-firewalld.lock";
/// Where waiting runs queue (see the module documentation).
pub const QUEUE_DIR: &str = "/run/tproxy-firewalld.queue";
/// How often a waiting run looks at the queue and the lock.
const POLL: Duration = Duration::from_millis(20);
/// The temporary files of ours that may be left in firewalld's configuration directory:
/// `tempfile`'s names, this prefix and six random letters or digits.
const TEMP_PREFIXES: [&str; 3] = [
    ".direct.xml.",
    ".firewalld.conf.",
    ".tproxy-firewalld.applied.",
];
const TEMP_RANDOM_LEN: usize = 6;

/// Held while a run changes the firewall; dropping it lets the next run in.
pub struct Lock {
    // Dropped in this order: the ticket goes first, then the lock file is unlocked.
    _ticket: Ticket,
    file: Flock<File>,
}

/// The lock for a run that changes the firewall, after removing temporary files interrupted
/// runs left in `firewalld_config_dir`; None for a dry run and for a run without root (which
/// changes nothing: it fails asking for root, or is a dry run configured in a file).
/// Waits up to `timeout` for the runs ahead.
pub fn for_changes(
    dry_run: bool,
    timeout: Duration,
    firewalld_config_dir: &Path,
) -> Result<Option<Lock>> {
    if dry_run || !host::is_root() {
        return Ok(None);
    }
    let lock_file = Path::new(LOCK_FILE);
    let lock = Lock::acquire(lock_file, Path::new(QUEUE_DIR), timeout)?;
    // direct.xml and firewalld.conf are written in the first; the raw backend's records
    // (backend::applied) beside the lock.
    let run_dir = lock_file.parent().unwrap_or(Path::new("/"));
    for dir in [firewalld_config_dir, run_dir] {
        match lock.remove_stale_temp_files(dir) {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => notice(
                Code::StaleTemporaryFiles,
                format!(
                    "removed temporary files an interrupted run left behind: {}",
                    removed
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Err(error) => notice(
                Code::StaleTemporaryFiles,
                format!(
                    "could not look for temporary files an interrupted run left in {}: {error:#}",
                    dir.display()
                ),
            ),
        }
    }
    Ok(Some(lock))
}

impl Lock {
    /// Queues behind the runs that came first, then takes `lock_file`; fails naming the lock
    /// file (and its holder when known) once `timeout` has passed.
    pub fn acquire(lock_file: &Path, queue_dir: &Path, timeout: Duration) -> Result<Lock> {
        let deadline = Instant::now() + timeout;
        let shown = lock_file.display();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(lock_file)
            .with_context(|| format!("opening the lock file {shown}"))?;
        let ticket = Ticket::take(queue_dir)?;
        let mut told = false;
        loop {
            let ahead = ticket.live_ahead()?;
            if ahead.is_empty() {
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(locked) => {
                        let pid = format!("{}\n", std::process::id());
                        // Only informative: a failure to record the pid is no reason to stop.
                        let _ = locked
                            .set_len(0)
                            .and_then(|()| locked.write_at(pid.as_bytes(), 0));
                        return Ok(Lock {
                            _ticket: ticket,
                            file: locked,
                        });
                    }
                    Err((unlocked, Errno::EWOULDBLOCK)) => file = unlocked,
                    Err((_, errno)) => {
                        return Err(io::Error::from(errno))
                            .with_context(|| format!("locking {shown}"))
                    }
                }
            }
            let holder = match ahead.first() {
                Some(first) => Some(first.pid),
                None => pid_in(lock_file),
            };
            let who = match holder {
                Some(pid) => format!("another tproxy-firewalld run (pid {pid})"),
                None => format!("another process holding {shown}"),
            };
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "timed out after {} s waiting for the lock {shown}, held by {who}; nothing was changed",
                    timeout.as_secs()
                );
            }
            if !told {
                notice(
                    Code::LockWait,
                    format!(
                        "waiting for {who} to finish … (lock {shown}, giving up after {} s)",
                        timeout.as_secs()
                    ),
                );
                told = true;
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    /// Removes, from `dir`, regular files named as the temporary files we write there
    /// (`.direct.xml.XXXXXX`, `.firewalld.conf.XXXXXX`, `.tproxy-firewalld.applied.XXXXXX`):
    /// left by a run killed mid-write, as
    /// no run of ours is writing while the lock is held. Returns what it removed.
    pub fn remove_stale_temp_files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(is_our_temp_name) {
                continue;
            }
            let path = entry.path();
            // symlink_metadata: a link with such a name is not ours; it is left alone.
            match fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.is_file() => {}
                _ => continue,
            }
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        removed.sort();
        Ok(removed)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // The pid says who holds the lock; nobody does once it is released.
        let _ = self.file.set_len(0);
    }
}

fn is_our_temp_name(name: &str) -> bool {
    TEMP_PREFIXES.iter().any(|prefix| {
        name.strip_prefix(prefix).is_some_and(|random| {
            random.len() == TEMP_RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    })
}

/// The pid recorded in a lock file, when it names a live process.
fn pid_in(lock_file: &Path) -> Option<u32> {
    let bytes = super::fs::read_at_most(File::open(lock_file).ok()?, 64).ok()?;
    let pid: u32 = std::str::from_utf8(&bytes).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// A place in the queue: `<number>.<pid>` in the queue directory, locked by its run from the
/// moment the name exists (the file is created and locked as `.<pid>.new`, then linked).
struct Ticket {
    place: Place,
    path: PathBuf,
    dir: PathBuf,
    _file: Flock<File>,
}

/// A ticket's name: runs are served by number, then pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    number: u64,
    pid: u32,
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl Place {
    fn parse(name: &str) -> Option<Place> {
        let (number, pid) = name.split_once('.')?;
        if !all_digits(number) || !all_digits(pid) {
            return None;
        }
        Some(Place {
            number: number.parse().ok()?,
            pid: pid.parse().ok()?,
        })
    }

    fn name(&self) -> String {
        format!("{:020}.{}", self.number, self.pid)
    }
}

/// The name a run creates its ticket under before it is locked: `.<pid>.new`.
fn unlinked_name(pid: u32) -> String {
    format!(".{pid}.new")
}

fn is_unlinked_name(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".new"))
        .is_some_and(all_digits)
}

impl Ticket {
    /// Takes the next number in `dir` (created when missing).
    fn take(dir: &Path) -> Result<Ticket> {
        let shown = dir.display();
        match DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {shown}")),
        }
        let metadata = fs::symlink_metadata(dir).with_context(|| format!("reading {shown}"))?;
        if !metadata.is_dir() {
            bail!("{shown} is not a directory; remove it so that runs can queue");
        }
        let pid = std::process::id();
        let new = dir.join(unlinked_name(pid));
        'fresh: for _ in 0..100 {
            // No live process but this one has our pid: a file of that name is a dead run's.
            let _ = fs::remove_file(&new);
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&new)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", new.display())),
            };
            // Blocks only while a waiting run that found the file unlocked holds it to remove
            // it as a dead run's; linking it then fails and we start over.
            let file = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| io::Error::from(errno))
                .with_context(|| format!("locking {}", new.display()))?;
            for _ in 0..1000 {
                let number = places(dir)?.iter().map(|p| p.number).max().unwrap_or(0) + 1;
                let place = Place { number, pid };
                let path = dir.join(place.name());
                match fs::hard_link(&new, &path) {
                    Ok(()) => {
                        let _ = fs::remove_file(&new);
                        return Ok(Ticket {
                            place,
                            path,
                            dir: dir.to_path_buf(),
                            _file: file,
                        });
                    }
                    // Someone took that number (or a dead run of our pid left it): the next.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'fresh,
                    Err(e) => {
                        return Err(e).with_context(|| format!("creating {}", path.display()))
                    }
                }
            }
        }
        bail!("could not take a place in the queue {shown}");
    }

    /// The live runs queued before this one, first first. Removes the tickets of runs that
    /// are gone (their lock can be taken), and the files they were creating them under.
    fn live_ahead(&self) -> Result<Vec<Place>> {
        let mut ahead = Vec::new();
        for entry in
            fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", self.dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let place = Place::parse(&name);
            let wanted = match place {
                Some(place) => place < self.place,
                None => is_unlinked_name(&name),
            };
            if !wanted {
                continue;
            }
            let path = entry.path();
            let file = match OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
            };
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(dead) => {
                    // Its run is gone. Remove it only if the name still means this file.
                    let held = dead.metadata()?;
                    if fs::symlink_metadata(&path)
                        .is_ok_and(|m| m.dev() == held.dev() && m.ino() == held.ino())
                    {
                        let _ = fs::remove_file(&path);
                    }
                }
                Err((_, Errno::EWOULDBLOCK)) => ahead.extend(place),
                Err((_, errno)) => {
                    return Err(io::Error::from(errno))
                        .with_context(|| format!("locking {}", path.display()))
                }
            }
        }
        ahead.sort();
        Ok(ahead)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The tickets in the queue directory; other names are ignored.
fn places(dir: &Path) -> Result<Vec<Place>> {
    let mut places = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if let Some(place) = entry.file_name().to_str().and_then(Place::parse) {
            places.push(place);
        }
    }
    Ok(places)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("test.lock"), dir.join("queue"))
    }

    fn tickets(queue: &Path) -> usize {
        places(queue).map_or(0, |p| p.len())
    }

    fn held_tickets(queue: &Path) -> usize {
        let places = places(queue).unwrap_or_default();
        places
            .iter()
            .filter(|place| {
                File::open(queue.join(place.name())).is_ok_and(|file| {
                    matches!(
                        Flock::lock(file, FlockArg::LockExclusiveNonblock),
                        Err((_, Errno::EWOULDBLOCK))
                    )
                })
            })
            .count()
    }

    #[test]
    fn a_second_run_waits_and_times_out_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let (file, queue) = paths(dir.path());
        let first = Lock::acquire(&file, &queue, Duration::ZERO).unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!("{}\n", std::process::id())
        );
        let started = Instant::now();
        let error = Lock::acquire(&file, &queue, Duration::from_millis(300))
            .err()
            .unwrap()
            .to_string();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(
            error.contains(&format!("(pid {})", std::process::id())),
            "{error}"
        );
        // The one that gave up took its ticket out of the queue.
        assert_eq!(tickets(&queue), 1);
        drop(first);
        assert_eq!(tickets(&queue), 0);
        assert_eq!(fs::read_to_string(&file).unwrap(), "");
        Lock::acquire(&file, &queue, Duration::ZERO).unwrap();
    }

    #[test]
    fn tickets_of_dead_runs_and_other_names_are_no_obstacle() {
        let dir = tempfile::tempdir().unwrap();
        let (file, queue) = paths(dir.path());
        fs::create_dir(&queue).unwrap();
        // A run killed while queued leaves its ticket unlocked.
        fs::write(queue.join(format!("{:020}.1", 1)), "").unwrap();
        fs::write(queue.join("notes.txt"), "").unwrap();
        // ... or the file it was creating its ticket under.
        fs::write(queue.join(unlinked_name(1)), "").unwrap();
        let lock = Lock::acquire(&file, &queue, Duration::ZERO).unwrap();
        assert!(!queue.join(format!("{:020}.1", 1)).exists());
        assert!(!queue.join(unlinked_name(1)).exists());
        assert_eq!(lock._ticket.place.number, 2);
        assert!(queue.join("notes.txt").exists());
    }

    #[test]
    fn an_external_flock_holder_keeps_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let (file, queue) = paths(dir.path());
        let held = Flock::lock(File::create(&file).unwrap(), FlockArg::LockExclusive).unwrap();
        let error = Lock::acquire(&file, &queue, Duration::from_millis(100))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("held by another process holding"), "{error}");
        drop(held);
        Lock::acquire(&file, &queue, Duration::ZERO).unwrap();
    }

    #[test]
    fn runs_are_served_in_the_order_they_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (file, queue) = paths(dir.path());
        let first = Lock::acquire(&file, &queue, Duration::ZERO).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for n in 1..=6 {
            let (file, queued, order) = (file.clone(), queue.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _lock = Lock::acquire(&file, &queued, Duration::from_secs(30)).unwrap();
                order.lock().unwrap().push(n);
                std::thread::sleep(Duration::from_millis(10));
            }));
            // The next one starts once this one holds its ticket (a ticket not yet locked
            // looks like a dead run's and may be taken away).
            while held_tickets(&queue) < n + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(first);
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(tickets(&queue), 0);
    }

    #[test]
    fn only_our_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (file, queue) = paths(dir.path());
        let config = dir.path().join("firewalld");
        fs::create_dir(&config).unwrap();
        let ours = [
            ".direct.xml.aB3dE9",
            ".firewalld.conf.Zz0000",
            ".tproxy-firewalld.applied.Qw3rty",
        ];
        let theirs = [
            "direct.xml",
            "direct.xml.old",
            "direct.xml.aB3dE9",
            ".direct.xml.old",
            ".direct.xml.abc",
            ".direct.xml.a-b_c.",
        ];
        for name in ours.iter().chain(&theirs) {
            fs::write(config.join(name), "x").unwrap();
        }
        fs::create_dir(config.join(".direct.xml.dir000")).unwrap();
        std::os::unix::fs::symlink("direct.xml", config.join(".direct.xml.link00")).unwrap();
        let lock = Lock::acquire(&file, &queue, Duration::ZERO).unwrap();
        let removed = lock.remove_stale_temp_files(&config).unwrap();
        assert_eq!(removed, ours.map(|name| config.join(name)));
        for name in theirs
            .iter()
            .chain(&[".direct.xml.dir000", ".direct.xml.link00"])
        {
            assert!(
                fs::symlink_metadata(config.join(name)).is_ok(),
                "{name} was removed"
            );
        }
        assert!(lock
            .remove_stale_temp_files(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
