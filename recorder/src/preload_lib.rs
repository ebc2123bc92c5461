//! The preload library shipped inside the binary: written once to a cache
//! path named by its content hash, so `cargo install` alone gives a working
//! `record`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/liballoctrace_preload.so"));
const FILE: &str = "liballoctrace_preload.so";

/// The preload library to use: `$ALLOCTRACE_PRELOAD` if set, else the
/// embedded copy extracted to `$XDG_CACHE_HOME/alloctrace/<hash>/` (or
/// `~/.cache/...`, or the temp dir), else a copy installed beside the binary.
pub fn preload_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ALLOCTRACE_PRELOAD").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        anyhow::ensure!(
            p.is_file(),
            "ALLOCTRACE_PRELOAD={} is not a file",
            p.display()
        );
        return Ok(p);
    }
    if EMBEDDED.is_empty() {
        let exe = std::env::current_exe().context("locating the alloctrace binary")?;
        let beside = exe.with_file_name(FILE);
        anyhow::ensure!(
            beside.exists(),
            "this alloctrace was built without its preload library and none is installed at {}",
            beside.display()
        );
        return Ok(beside);
    }
    let hash = env!("ALLOCTRACE_PRELOAD_HASH");
    let mut errors = Vec::new();
    for base in cache_dirs() {
        let dir = base.join("alloctrace").join(hash);
        match extract(&dir) {
            Ok(p) => return Ok(p),
            Err(e) => errors.push(format!("{}: {e:#}", dir.display())),
        }
    }
    anyhow::bail!("cannot write the preload library: {}", errors.join("; "))
}

fn cache_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        v.push(PathBuf::from(x));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        v.push(PathBuf::from(h).join(".cache"));
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    v.push(std::env::temp_dir().join(format!("alloctrace-{uid}")));
    v
}

fn extract(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(FILE);
    if std::fs::metadata(&path)
        .map(|m| m.len() == EMBEDDED.len() as u64)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(EMBEDDED)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
