//! Leak suppressions in LeakSanitizer's `leak:PATTERN` format.
//!
//! A pattern matches a frame when it matches the frame's function name, its
//! source file, or its module path. `*` matches any run of characters; a
//! leading `^` anchors the match at the start and a trailing `$` at the end;
//! otherwise the pattern may match anywhere (as in LSan). Lines that are
//! empty or start with `#` are ignored; other kinds (`race:`, ...) too.
//! The defaults are in `default.supp` beside this crate's `Cargo.toml`.

use std::path::Path;

use anyhow::Context;

use crate::symbols::Frame;

/// The default suppressions: C library buffers kept for the whole run.
pub const DEFAULT: &str = include_str!("../default.supp");

/// A set of `leak:` patterns.
#[derive(Clone, Debug, Default)]
pub struct Suppressions {
    patterns: Vec<String>,
}

impl Suppressions {
    /// The patterns of `text` (in `leak:` format).
    pub fn parse(text: &str) -> Self {
        let mut s = Suppressions::default();
        s.add_text(text);
        s
    }

    /// The default list, plus the files given (each in `leak:` format).
    pub fn load(defaults: bool, files: &[impl AsRef<Path>]) -> anyhow::Result<Self> {
        let mut s = if defaults {
            Suppressions::parse(DEFAULT)
        } else {
            Suppressions::default()
        };
        for f in files {
            let f = f.as_ref();
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading suppressions {}", f.display()))?;
            s.add_text(&text);
        }
        Ok(s)
    }

    fn add_text(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if let Some(p) = line.strip_prefix("leak:") {
                let p = p.trim();
                if !p.is_empty() {
                    self.patterns.push(p.to_string());
                }
            }
        }
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The first pattern that matches a frame of `stack`, if any.
    pub fn matching(&self, stack: &[Frame]) -> Option<&str> {
        self.patterns
            .iter()
            .find(|p| {
                stack.iter().any(|f| {
                    [&f.function, &f.file, &f.module]
                        .into_iter()
                        .flatten()
                        .any(|s| matches(p, s))
                })
            })
            .map(String::as_str)
    }
}

/// Whether LSan-style `pattern` matches `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    let parts: Vec<&str> = p.split('*').collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        let last = i == parts.len() - 1;
        if i == 0 && anchored_start {
            if !text.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if last && anchored_end {
            if text.len() < pos + part.len() || !text.ends_with(part) {
                return false;
            }
            pos = text.len();
        } else {
            match text[pos..].find(part) {
                Some(at) => pos += at + part.len(),
                None => return false,
            }
        }
    }
    if anchored_end && !parts.last().is_some_and(|p| p.is_empty()) {
        return pos == text.len();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn lsan_patterns() {
        assert!(matches("_nl_", "_nl_load_locale"));
        assert!(matches("^_dl_", "_dl_allocate_tls"));
        assert!(!matches("^_dl_", "x_dl_allocate"));
        assert!(matches("foo$", "barfoo"));
        assert!(!matches("foo$", "foobar"));
        assert!(matches("a*c", "xxabbbcxx"));
        assert!(matches("^a*c$", "abbbc"));
        assert!(!matches("^a*c$", "abbbcd"));
        assert!(matches("libc.so*", "/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(!matches("zzz", "abc"));
    }
}
