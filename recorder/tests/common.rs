//! Compiling test programs, recording them, and reading traces back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use traces::{Reader, Record, StackTable};

/// `record` reaps children with `waitpid(-1)`: one recording at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Compiles `tests/programs/<name>` (C or C++) into `dir`.
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name);
    let out = dir.join(name.split('.').next().unwrap_or(name));
    let cc = if name.ends_with(".cpp") { "g++" } else { "cc" };
    let st = Command::new(cc)
        .args(["-O0", "-g", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run the C compiler");
    assert!(st.success(), "compiling {name}");
    out
}

/// A finished recording.
pub struct Run {
    pub traces: Vec<PathBuf>,
    pub exit_code: i32,
}

/// Records `cmd` into `dir/out.atrace` (default time resolution).
pub fn record(dir: &Path, cmd: &[&str]) -> Run {
    record_with(dir, cmd, recorder::DEFAULT_TIME_RESOLUTION)
}

/// Records `cmd` into `dir/out.atrace` with a time resolution of
/// `resolution` ns.
pub fn record_with(dir: &Path, cmd: &[&str], resolution: u64) -> Run {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let opts = recorder::RecordOptions {
        output: dir.join("out.atrace"),
        command: cmd.iter().map(Into::into).collect(),
        max_depth: 64,
        quiet: true,
        time_resolution: resolution,
    };
    let o = recorder::record(&opts).expect("record");
    Run {
        traces: o.traces,
        exit_code: o.exit_code,
    }
}

/// A whole trace in memory.
pub struct Trace {
    pub header: traces::Header,
    pub records: Vec<Record>,
    pub stacks: StackTable,
    pub trailer: Option<traces::Trailer>,
}

/// Reads every record of `path`.
pub fn read(path: &Path) -> Trace {
    let mut r = Reader::open(path).expect("open trace");
    let records: Vec<Record> = r.by_ref().map(|x| x.expect("record")).collect();
    Trace {
        header: r.header().clone(),
        stacks: r.stacks().clone(),
        trailer: r.trailer().cloned(),
        records,
    }
}

/// Symbols of an executable: (start, end, name) from `nm -S`.
pub fn symbols(exe: &Path) -> Vec<(u64, u64, String)> {
    let out = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(exe)
        .output()
        .expect("nm");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 4 {
                return None;
            }
            let a = u64::from_str_radix(f[0], 16).ok()?;
            let s = u64::from_str_radix(f[1], 16).ok()?;
            Some((a, a + s, f[3].to_string()))
        })
        .collect()
}
