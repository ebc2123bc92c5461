//! Real programs under `LD_PRELOAD=liballoctrace_malloc.so`: C workloads compiled by
//! the test (every entry point, fork safety, churn with cross-thread frees), and
//! python3, sqlite3, git and gcc, whose output must be identical with and without
//! the preloaded allocator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Builds the cdylib (once) into this test binary's target directory and profile and
/// returns its path (also used by `workloads`).
pub(crate) fn preload_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "alloctrace-malloc", "--target-dir"])
            .arg(target_dir);
        if profile_dir.file_name().unwrap() == "release" {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building liballoctrace_malloc.so failed");
        let lib = profile_dir.join("liballoctrace_malloc.so");
        assert!(lib.exists(), "{} missing", lib.display());
        lib
    })
}

fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("alloctrace-allocator-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Compiles a C source from `tests/programs` (or `bench`) with `cc -O2 -pthread`.
fn compile(src: &Path) -> PathBuf {
    let out = scratch(src.file_stem().unwrap().to_str().unwrap());
    let status = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc {} failed", src.display());
    out
}

/// Runs `cmd`, with our allocator preloaded if `preload`, killing it after `limit`.
fn run(mut cmd: Command, preload: bool, limit: Duration) -> Output {
    if preload {
        cmd.env("LD_PRELOAD", preload_lib());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("{cmd:?} (preload: {preload}) did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Runs the command built by `make` without and with the preloaded allocator and
/// asserts both succeed with identical stdout; returns that stdout.
fn same_output(make: impl Fn() -> Command) -> String {
    let plain = run(make(), false, Duration::from_secs(60));
    let ours = run(make(), true, Duration::from_secs(60));
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        plain.status.success(),
        "without preload: {}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(
        ours.status.success(),
        "with preload: {:?}: {}",
        ours.status,
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(
        text(&ours),
        text(&plain),
        "output differs under the preloaded allocator"
    );
    assert!(!text(&plain).is_empty());
    text(&plain)
}

#[test]
fn preload_replaces_malloc() {
    let maps = run(
        {
            let mut c = Command::new("cat");
            c.arg("/proc/self/maps");
            c
        },
        true,
        Duration::from_secs(10),
    );
    assert!(String::from_utf8_lossy(&maps.stdout).contains("liballoctrace_malloc.so"));
    let exe = compile(&programs_dir().join("capi.c"));
    let ours = run(Command::new(&exe), true, Duration::from_secs(20));
    let plain = run(Command::new(&exe), false, Duration::from_secs(20));
    assert!(
        ours.status.success(),
        "capi.c under preload: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert!(
        plain.status.success(),
        "capi.c under glibc: {}",
        String::from_utf8_lossy(&plain.stderr)
    );
    // Our 100-byte request lands in the 112-byte class; glibc's chunk gives 104.
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        "ok 112\n",
        "served by our allocator"
    );
    assert_ne!(ours.stdout, plain.stdout);
}

/// The library is `no_std`: no standard-library runtime (its panic machinery names
/// `RUST_BACKTRACE`) is mapped into the programs it is preloaded into, and the
/// personality routine it defines for `core` is not exported.
#[test]
fn preload_library_carries_no_std_runtime() {
    let bytes = std::fs::read(preload_lib()).unwrap();
    let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
    assert!(!has(b"RUST_BACKTRACE"), "std's panic runtime is linked in");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(preload_lib())
        .output();
    if let Ok(out) = out {
        let syms = String::from_utf8_lossy(&out.stdout);
        assert!(syms.contains(" T malloc\n"), "{syms}");
        assert!(!syms.contains("rust_eh_personality"), "{syms}");
    }
}

/// Pages the library's loadable segments span in memory: each is resident in every
/// process the library is preloaded into (fault-around maps the file-backed pages
/// of a segment on its first touch; the writable one is copied on write), so
/// `sqlite3` pays for every one (see BENCHMARKS.md). Six: five of read-only data
/// and code, one of writable data, which has only a few dozen bytes to spare
/// (a new static or import can cost a seventh page). Checked on the release build,
/// and only when lld linked it (ld.bfd lays out the writable segment differently).
#[test]
fn preload_library_spans_five_pages() {
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.parent().unwrap().parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            "alloctrace-malloc",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building liballoctrace_malloc.so failed");
    let elf = std::fs::read(target_dir.join("release/liballoctrace_malloc.so")).unwrap();
    if !elf.windows(11).any(|w| w == b"Linker: LLD") {
        // ld.bfd spans seven pages (README, limits): nothing to hold it to.
        eprintln!("preload_library_spans_five_pages: skipped, not linked by lld");
        return;
    }
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let page = 4096;
    let mut pages = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap()) == 1 {
            let (vaddr, memsz) = (u64_at(ph + 0x10), u64_at(ph + 0x28));
            pages.push((vaddr + memsz).div_ceil(page) - vaddr / page);
        }
    }
    assert!(
        pages.iter().sum::<usize>() <= 5,
        "PT_LOAD page spans {pages:?}"
    );
}

#[test]
fn fork_while_threads_allocate() {
    let exe = compile(&programs_dir().join("fork.c"));
    let out = run(Command::new(&exe), true, Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "forked 40\n",
        "every child ran to completion"
    );
}

/// Blocks of the shared chunk's runs under eight threads: cross-thread frees,
/// aligned allocations (up to 64 KiB), calloc, realloc into and out of runs, a fork,
/// and the arena passing 8 MiB (the chunk map leaving its static prefix) while the
/// threads allocate. Several runs: the move happens once a process.
#[test]
fn runs_under_threads_and_the_map_move() {
    let exe = compile(&programs_dir().join("runs_mt.c"));
    for _ in 0..5 {
        let mut cmd = Command::new(&exe);
        cmd.arg("20000");
        let out = run(cmd, true, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }
}

/// Run blocks lent to smaller classes under threads with caches of their own:
/// cross-thread frees, waves of threads exiting (their caches flushed), blocks
/// grown to their usable size by realloc (in place), and forks while the other
/// threads lend (the child takes blocks of every run class). Several fresh
/// processes: a class borrows while it has no run of its own, early in a
/// process's life.
#[test]
fn lending_under_threads_and_fork() {
    let exe = compile(&programs_dir().join("lending_mt.c"));
    let mut lent = 0;
    for _ in 0..6 {
        let out = run(Command::new(&exe), true, Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
        lent += err
            .lines()
            .find_map(|l| l.strip_prefix("lent "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("the lent count");
    }
    assert!(lent > 0, "no block was lent");
}

/// A mapping right above the program break stops `sbrk`: malloc must carry on with
/// memory mapped elsewhere, as glibc's does, not return null.
#[test]
fn malloc_works_when_the_break_cannot_grow() {
    let exe = compile(&programs_dir().join("brk_blocked.c"));
    let out = same_output(|| Command::new(&exe));
    assert!(out.starts_with("ok 200000 "), "{out}");
}

#[test]
fn churn_workloads_match_glibc() {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
    for name in ["churn.c", "churn_mt.c"] {
        let exe = compile(&bench.join(name));
        same_output(|| {
            let mut c = Command::new(&exe);
            c.arg("400000");
            c
        });
    }
}

#[test]
fn python3_workload() {
    same_output(|| {
        let mut c = Command::new("python3");
        c.arg(programs_dir().join("workload.py"));
        c
    });
}

#[test]
fn sqlite3_workload() {
    let out = same_output(|| {
        let mut c = Command::new("sqlite3");
        c.arg(":memory:")
            .stdin(std::fs::File::open(programs_dir().join("workload.sql")).unwrap());
        c
    });
    assert!(out.starts_with("60000|"));
}

#[test]
fn git_workload() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let root = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-list", "--max-parents=0", "HEAD"])
        .output()
        .unwrap();
    let root = String::from_utf8(root.stdout)
        .unwrap()
        .lines()
        .next()
        .expect("root commit")
        .to_string();
    for args in [
        vec!["show", "--stat", "--format=%H %an %s", root.as_str()],
        vec!["ls-tree", "-r", "-l", root.as_str()],
        vec!["log", "-p", "-n", "1", root.as_str()],
    ] {
        same_output(|| {
            let mut c = Command::new("git");
            c.arg("-C").arg(&repo).args(&args);
            c
        });
    }
    // A write path: a new repository with fixed dates has a deterministic history.
    let work = scratch("git-work");
    for preload in [false, true] {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        for i in 0..50 {
            std::fs::write(
                work.join(format!("f{i}.txt")),
                format!("line {i}\n").repeat(i + 1),
            )
            .unwrap();
        }
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.arg("-C")
                .arg(&work)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args);
            c.env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z");
            let out = run(c, preload, Duration::from_secs(30));
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "first"]);
        let head = git(&["rev-parse", "HEAD"]);
        assert_eq!(
            head.trim(),
            expected_git_head(&head),
            "commit hash must not depend on the allocator"
        );
    }
}

/// The first run's HEAD, which the second (preloaded) run must reproduce.
fn expected_git_head(head: &str) -> String {
    static FIRST: OnceLock<String> = OnceLock::new();
    FIRST.get_or_init(|| head.trim().to_string()).clone()
}

#[test]
fn gcc_compiles_identically() {
    let src = programs_dir().join("compile_me.c");
    let asm = same_output(|| {
        let mut c = Command::new("gcc");
        c.args(["-O2", "-S", "-o", "-"]).arg(&src);
        c
    });
    assert!(asm.contains("sum_list"));
    // A full compile and link under the preloaded allocator, then run the result.
    let exe = scratch("compile_me");
    let mut c = Command::new("gcc");
    c.args(["-O2", "-o"]).arg(&exe).arg(&src);
    let out = run(c, true, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ran = Command::new(&exe).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "24 1 9\n");
}
