//! One recording session: the shared directory, the child process, the
//! collection loop, reaping, and trace naming.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use traces::ExitStatus;

use crate::collector::ProcTrace;
use crate::shm::ProcMap;
use crate::RecordOutcome;

/// What to record and how.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    /// The root trace; other processes get `<stem>.<pid>.atrace` beside it.
    pub output: PathBuf,
    /// Program and arguments.
    pub command: Vec<OsString>,
    /// Backtrace depth cap; 0 records no backtraces.
    pub max_depth: usize,
    /// Don't print where the traces went.
    pub quiet: bool,
    /// Times of events a process records while it has a single thread are
    /// rounded down to a multiple of this many ns (1 keeps every time to the
    /// nanosecond; [`DEFAULT_TIME_RESOLUTION`] by default). Such times are
    /// most of a trace's bytes when kept to the nanosecond (their low digits
    /// are noise that does not compress), and their order does not depend on
    /// them. From the moment a second thread of the process records anything,
    /// its events keep their nanosecond times: order across threads comes
    /// from times, and is exact. Each forked child and exec'd image starts
    /// again with one thread. From [`LATE_TIMES_FROM`] on, the hooks take
    /// no clock reading for most events while the process has one thread:
    /// the collector dates them, a little early
    /// (`alloctrace_abi::FLAG_LATE_TIMES`), rounded down likewise.
    pub time_resolution: u64,
}

/// The time resolution from which events of single-threaded phases are
/// dated by the collector instead of timed by the hooks
/// (`alloctrace_abi::FLAG_LATE_TIMES`).
pub const LATE_TIMES_FROM: u64 = 1_000_000;

/// Default time resolution of events recorded while a process has a single
/// thread, in ns (see [`RecordOptions::time_resolution`]).
pub const DEFAULT_TIME_RESOLUTION: u64 = 1_000_000;

/// Runs `opts.command` under the recorder and writes its traces. If the
/// recorder cannot start, the program still runs (untraced) after one message.
pub fn record(opts: &RecordOptions) -> anyhow::Result<RecordOutcome> {
    anyhow::ensure!(!opts.command.is_empty(), "no command to record");
    let setup = prepare(opts);
    let (dir, preload, old_trace) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("alloctrace: cannot record ({e:#}); running the program untraced");
            let status = Command::new(&opts.command[0])
                .args(&opts.command[1..])
                .status()
                .with_context(|| format!("running {}", opts.command[0].to_string_lossy()))?;
            return Ok(RecordOutcome {
                traces: vec![],
                exit_code: exit_code_of(status),
            });
        }
    };
    // The trace writer allocates and frees block buffers of up to a few MB
    // all the time: keep them in the heap instead of mapping, zeroing and
    // unmapping pages for each (a third of the collector's page faults).
    // SAFETY: mallopt with integer arguments (32 MB is glibc's maximum).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
    let result = run_session(opts, &dir, &preload, old_trace, opts.time_resolution.max(1));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn exit_code_of(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

/// Checks the output is writable and creates the shared directory; returns
/// it, the preload library, and the trace the output replaces, if any, to
/// be closed once the program runs (see [`create_trace_file`]).
fn prepare(opts: &RecordOptions) -> anyhow::Result<(PathBuf, PathBuf, Option<std::fs::File>)> {
    let (_, old_trace) = create_trace_file(&opts.output)
        .with_context(|| format!("cannot write {}", opts.output.display()))?;
    let preload = crate::preload_path()?;
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "alloctrace-{}-{}",
        std::process::id(),
        crate::shm::now() % 1_000_000_007
    ));
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok((dir, preload, old_trace))
}

/// Creates a trace file, empty. A trace left at that path by an earlier
/// recording is not truncated in place: freeing the blocks of a file just
/// written takes the file system a while (ext4 here: 1-3 ms for a 0.2 MB
/// trace, 70-130 ms for 40 MB), all before the program starts. Instead, when
/// it is a plain file of ours with one name that we may write, a new file
/// with its group and permission bits is renamed over it, and the old file
/// is returned open: its last descriptor, closed by the caller when it suits
/// (`record`: on a thread of its own once the program runs), frees it.
/// Otherwise (or if any step fails) the file is truncated as usual: a trace
/// made read-only is refused, as before. An empty file (the root trace, made
/// so by the check that the output is writable) is opened as it is:
/// truncating it would make ext4 start writing the whole trace back when it
/// is closed (its guard for files rewritten in place), ~1.5-5 ms for a 40 MB
/// trace at the end of `record`.
pub(crate) fn create_trace_file(
    path: &Path,
) -> std::io::Result<(std::fs::File, Option<std::fs::File>)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path);
    if meta
        .as_ref()
        .is_ok_and(|m| m.file_type().is_file() && m.len() == 0)
    {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
            // Checked on the open file too: bytes written there meanwhile
            // would be left past the end of a shorter trace.
            if f.metadata().is_ok_and(|m| m.len() == 0) || f.set_len(0).is_ok() {
                return Ok((f, None));
            }
        }
    }
    if let Ok(m) = &meta {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if m.file_type().is_file() && m.len() > 0 && m.nlink() == 1 && m.uid() == uid {
            if let Some((new, old)) = replace_trace_file(path, m) {
                return Ok((new, Some(old)));
            }
        }
    }
    std::fs::File::create(path).map(|f| (f, None))
}

/// Renames a new empty file, with the group and permission bits of the one
/// at `path` (`meta`), over it; returns the new file and the old one, open.
/// `None` (and nothing changed) if any step fails.
fn replace_trace_file(
    path: &Path,
    meta: &std::fs::Metadata,
) -> Option<(std::fs::File, std::fs::File)> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    // Opened for writing: one we may not write is not ours to replace.
    let old = std::fs::OpenOptions::new().write(true).open(path).ok()?;
    let om = old.metadata().ok()?;
    if (om.dev(), om.ino()) != (meta.dev(), meta.ino()) {
        return None;
    }
    let mut name = OsString::from(".");
    name.push(path.file_name()?);
    name.push(format!(".{}.new", std::process::id()));
    let tmp = path.with_file_name(name);
    let new = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .ok()?;
    // The group before the bits: a change of group clears set-id bits.
    let done = new.metadata().is_ok_and(|m| {
        m.gid() == om.gid() || std::os::unix::fs::fchown(&new, None, Some(om.gid())).is_ok()
    }) && new.set_permissions(om.permissions()).is_ok()
        && std::fs::rename(&tmp, path).is_ok();
    if !done {
        let _ = std::fs::remove_file(&tmp);
        return None;
    }
    Some((new, old))
}

fn trace_path(root: &Path, pid: u32, image: u32, is_root: bool) -> PathBuf {
    if is_root {
        return root.to_path_buf();
    }
    let stem = root
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = root
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "atrace".into());
    let name = if image == 0 {
        format!("{stem}.{pid}.{ext}")
    } else {
        format!("{stem}.{pid}.{image}.{ext}")
    };
    root.with_file_name(name)
}

fn run_session(
    opts: &RecordOptions,
    dir: &Path,
    preload: &Path,
    old_trace: Option<std::fs::File>,
    time_resolution: u64,
) -> anyhow::Result<RecordOutcome> {
    // Orphaned descendants are re-parented to us, so we learn how they ended.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut ld_preload = OsString::from(preload);
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        ld_preload.push(" ");
        ld_preload.push(old);
    }
    let mut cmd = Command::new(&opts.command[0]);
    cmd.args(&opts.command[1..])
        .env("LD_PRELOAD", ld_preload)
        .env(alloctrace_abi::ENV_DIR, dir)
        .env(alloctrace_abi::ENV_MAX_DEPTH, opts.max_depth.to_string())
        .env(
            alloctrace_abi::ENV_COLLECTOR,
            std::process::id().to_string(),
        );
    if crate::clock::tsc_usable() {
        cmd.env(alloctrace_abi::ENV_CLOCK, "tsc");
    } else {
        cmd.env_remove(alloctrace_abi::ENV_CLOCK);
    }
    // Single-threaded times kept to a millisecond or coarser: the hooks may
    // leave them to the collector's rounds (`abi::FLAG_LATE_TIMES`).
    if time_resolution >= LATE_TIMES_FROM {
        cmd.env(alloctrace_abi::ENV_LATE_TIMES, "1");
    } else {
        cmd.env_remove(alloctrace_abi::ENV_LATE_TIMES);
    }
    let mut clock = crate::clock::TimeMap::new();
    // Ctrl-C and friends must not end the recording before the program.
    let signals = crate::signals::Guard::install();
    let blocked = signals.block();
    // The program gets its own signal dispositions (as a shell would give it).
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            blocked.in_child();
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    blocked.restore();
    let child =
        spawned.with_context(|| format!("cannot run {}", opts.command[0].to_string_lossy()))?;
    let root_pid = child.id();
    drop(child);
    // Freeing a replaced trace's blocks took ext4 ~70 ms for 40 MB here,
    // nearly all of it waiting, not running: on a thread of its own, neither
    // the program nor the collector waits for it. (If no thread can be
    // made, the file is closed here.)
    if let Some(old) = old_trace {
        let _ = std::thread::Builder::new()
            .name("alloctrace-close".into())
            .spawn(move || drop(old));
    }
    // The collector sleeps between rounds; a pidfd wakes it as soon as the
    // program exits, instead of up to one sleep later.
    // SAFETY: pidfd_open with integer arguments; the descriptor is closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, root_pid as libc::c_long, 0) } as i32;

    let mut live: BTreeMap<(u32, u32), (ProcTrace, PathBuf)> = BTreeMap::new();
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    let mut pending: HashMap<(u32, u32), u32> = HashMap::new();
    let mut statuses: HashMap<u32, ExitStatus> = HashMap::new();
    let mut written: Vec<(bool, PathBuf)> = Vec::new();
    let mut root_exit: Option<i32> = None;
    let mut errors: Vec<String> = Vec::new();
    loop {
        // 1. New process images.
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(key) = name.to_str().and_then(alloctrace_abi::parse_proc_file_name) else {
                    continue;
                };
                if seen.contains(&key) {
                    continue;
                }
                let path = e.path();
                match ProcMap::open(&path).ok().filter(|m| m.ready()) {
                    Some(map) if map.header().version != alloctrace_abi::VERSION => {
                        // A library from another build (`ALLOCTRACE_PRELOAD`)
                        // lays the file out differently: reading it would
                        // give a wrong or empty trace.
                        seen.insert(key);
                        errors.push(format!(
                            "process {}: its preload library writes events in layout version {}, this recorder reads version {} (ALLOCTRACE_PRELOAD names a library from another build?); not recorded",
                            key.0,
                            map.header().version,
                            alloctrace_abi::VERSION
                        ));
                        let _ = std::fs::remove_file(&path);
                    }
                    Some(map) => {
                        seen.insert(key);
                        let is_root = key == (root_pid, 0);
                        let out = trace_path(&opts.output, key.0, key.1, is_root);
                        // The file stays until the image is finished, so a
                        // later exec by the same pid gets the next number.
                        match ProcTrace::new(key.0, key.1, map, out, is_root, time_resolution) {
                            Ok(t) => {
                                live.insert(key, (t, path));
                            }
                            Err(e) => {
                                errors.push(format!("{e:#}"));
                                let _ = std::fs::remove_file(&path);
                            }
                        }
                    }
                    None => {
                        // Not ready: give a dead writer a few rounds, then drop it.
                        let n = pending.entry(key).or_insert(0);
                        *n += 1;
                        if *n > 200 && !alive(key.0) {
                            seen.insert(key);
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
            }
        }
        // 2. Drain.
        clock.calibrate();
        let mut work = 0;
        for (t, _) in live.values_mut() {
            match t.drain(&clock) {
                Ok(n) => work += n,
                Err(e) => errors.push(format!("{}: {e:#}", t.path.display())),
            }
        }
        // 3. Reap, and pass on signals meant for the program. Once it has
        // ended, a signal stops the wait for what outlives it.
        let was_running = root_exit.is_none();
        reap(root_pid, &seen, &mut statuses, &mut root_exit);
        let mut stop = false;
        if root_exit.is_none() {
            signals.forward(root_pid);
        } else if was_running {
            signals.clear(); // the program's own (it got them, or they were passed on)
        } else {
            stop = signals.take();
        }
        let keys: Vec<(u32, u32)> = live.keys().copied().collect();
        for key in keys {
            let newer = live.keys().any(|k| k.0 == key.0 && k.1 > key.1)
                || seen.iter().any(|k| k.0 == key.0 && k.1 > key.1);
            let status = if newer {
                Some(ExitStatus::Exec)
            } else if let Some(s) = statuses.get(&key.0) {
                Some(*s)
            } else if key.0 != root_pid && !alive(key.0) {
                Some(zombie_status(key.0))
            } else if stop {
                errors.push(format!(
                    "process {} still runs; its trace ends where the recording was stopped",
                    key.0
                ));
                Some(ExitStatus::Unknown)
            } else {
                None
            };
            if let Some(s) = status {
                if let Some((t, shm_path)) = live.remove(&key) {
                    let is_root = key == (root_pid, 0);
                    let r = t.finish(&clock, s);
                    let _ = std::fs::remove_file(&shm_path);
                    match r {
                        Ok(p) => written.push((is_root, p)),
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                }
            }
        }
        if root_exit.is_some() && (stop || live.is_empty() && !has_unseen(dir, &seen)) {
            break;
        }
        if work < 1000 {
            // Once the program is gone, what is left (its file seen late,
            // descendants) is polled every millisecond: a short program's
            // recording then ends up to 4 ms sooner.
            let ms = if work == 0 && root_exit.is_none() {
                5
            } else {
                1
            };
            if pidfd >= 0 && root_exit.is_none() {
                let mut pfd = libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, ms) };
            } else {
                std::thread::sleep(Duration::from_millis(ms as u64));
            }
        }
    }
    if pidfd >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(pidfd) };
    }
    drop(signals);
    written.sort_by_key(|(root, _)| !*root);
    let traces: Vec<PathBuf> = written.into_iter().map(|(_, p)| p).collect();
    if traces.first().map(|p| p != &opts.output).unwrap_or(true) {
        // The program never started recording (not dynamically linked, or the
        // library was refused): leave no empty root trace behind.
        if std::fs::metadata(&opts.output)
            .map(|m| m.len() == 0)
            .unwrap_or(false)
        {
            let _ = std::fs::remove_file(&opts.output);
        }
    }
    for e in &errors {
        eprintln!("alloctrace: {e}");
    }
    if !opts.quiet {
        if traces.is_empty() {
            eprintln!(
                "alloctrace: no trace written: the program loaded no recorder (statically linked?)"
            );
        }
        for p in &traces {
            eprintln!("alloctrace: wrote {}", p.display());
        }
    }
    Ok(RecordOutcome {
        traces,
        exit_code: root_exit.unwrap_or(0),
    })
}

fn has_unseen(dir: &Path, seen: &HashSet<(u32, u32)>) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .and_then(alloctrace_abi::parse_proc_file_name)
                    .is_some_and(|k| !seen.contains(&k))
            })
        })
        .unwrap_or(false)
}

/// Reaps the root child and the traced processes re-parented to us (we are
/// their subreaper). Only pids of this recording are waited for: a blanket
/// `waitpid(-1)` would also take the exit of unrelated children of this
/// process (a caller of `recorder::record` running other commands).
fn reap(
    root_pid: u32,
    seen: &HashSet<(u32, u32)>,
    statuses: &mut HashMap<u32, ExitStatus>,
    root_exit: &mut Option<i32>,
) {
    let pids = std::iter::once(root_pid).chain(seen.iter().map(|k| k.0));
    for pid in pids {
        if statuses.contains_key(&pid) {
            continue;
        }
        let mut st: libc::c_int = 0;
        // SAFETY: valid out pointer; WNOHANG never blocks.
        let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut st, libc::WNOHANG) };
        if got != pid as libc::pid_t {
            continue; // still running, or not our child (its status comes from /proc)
        }
        let (status, code) = if libc::WIFEXITED(st) {
            (
                ExitStatus::Code(libc::WEXITSTATUS(st)),
                libc::WEXITSTATUS(st),
            )
        } else if libc::WIFSIGNALED(st) {
            (
                ExitStatus::Signal(libc::WTERMSIG(st)),
                128 + libc::WTERMSIG(st),
            )
        } else {
            continue;
        };
        statuses.insert(pid, status);
        if pid == root_pid {
            *root_exit = Some(code);
        }
    }
}

/// Whether `pid` is running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(state_field(&s), Some("Z") | Some("X")),
        Err(_) => false,
    }
}

fn state_field(stat: &str) -> Option<&str> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
}

/// How a zombie we don't own ended, from `/proc/<pid>/stat` field 52.
fn zombie_status(pid: u32) -> ExitStatus {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return ExitStatus::Unknown;
    };
    let Some((_, rest)) = s.rsplit_once(')') else {
        return ExitStatus::Unknown;
    };
    // Field 3 is the first after ')'; exit_code is field 52.
    match rest
        .split_whitespace()
        .nth(49)
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(st) if libc::WIFEXITED(st) => ExitStatus::Code(libc::WEXITSTATUS(st)),
        Some(st) if libc::WIFSIGNALED(st) => ExitStatus::Signal(libc::WTERMSIG(st)),
        _ => ExitStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::create_trace_file;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn old_trace(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
        let p = dir.join("t.atrace");
        std::fs::File::create(&p)
            .unwrap()
            .write_all(b"an earlier trace")
            .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_replaced_trace_keeps_its_group_and_bits() {
        let d = tempfile::tempdir().unwrap();
        let p = old_trace(d.path(), 0o640);
        // Another group than ours: only root may give it (else the test
        // keeps our own group, which still checks the bits).
        let _ = std::os::unix::fs::chown(&p, None, Some(4242));
        let gid = std::fs::metadata(&p).unwrap().gid();
        let (new, old) = create_trace_file(&p).unwrap();
        let old = old.expect("replaced, not truncated");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.ino(), new.metadata().unwrap().ino());
        assert_eq!((m.len(), m.gid(), m.mode() & 0o7777), (0, gid, 0o640));
        // The old file, unlinked, keeps its bytes until closed.
        let o = old.metadata().unwrap();
        assert_eq!((o.len(), o.nlink()), (16, 0));
        // Nothing else left in the directory.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_read_only_trace_is_refused_not_replaced() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Root may write anything: run this test again as nobody.
            use std::os::unix::process::CommandExt;
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "session::tests::a_read_only_trace_is_refused_not_replaced",
                ])
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = old_trace(d.path(), 0o444);
        let e = create_trace_file(&p).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(std::fs::read(&p).unwrap(), b"an earlier trace");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlinked_trace_is_written_through_the_link() {
        let d = tempfile::tempdir().unwrap();
        let target = old_trace(d.path(), 0o644);
        let link = d.path().join("link.atrace");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let (mut f, old) = create_trace_file(&link).unwrap();
        assert!(old.is_none());
        f.write_all(b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn a_directory_is_no_trace() {
        let d = tempfile::tempdir().unwrap();
        assert!(create_trace_file(d.path()).is_err());
        assert!(d.path().is_dir());
    }
}
