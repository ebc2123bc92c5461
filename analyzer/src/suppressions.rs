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
    patterns: Vec<Pattern>,
}

/// One `leak:` pattern, split once into its literal parts (each with a
/// prepared substring searcher): a report checks every pattern against every
/// frame of every leak group, thousands of times for a large program.
#[derive(Clone, Debug)]
struct Pattern {
    text: String,
    anchored_start: bool,
    anchored_end: bool,
    /// The literal parts between `*`s, in order; empty ones dropped.
    parts: Vec<memchr::memmem::Finder<'static>>,
    /// Whether the pattern ends with `*` (then `$` anchors nothing).
    ends_with_star: bool,
}

impl Pattern {
    fn new(pattern: &str) -> Self {
        let (anchored_start, p) = match pattern.strip_prefix('^') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let (anchored_end, p) = match p.strip_suffix('$') {
            Some(p) => (true, p),
            None => (false, p),
        };
        Pattern {
            text: pattern.to_string(),
            // A leading `*` unanchors the first part, as a leading empty part did.
            anchored_start: anchored_start && !p.starts_with('*'),
            anchored_end,
            parts: p
                .split('*')
                .filter(|s| !s.is_empty())
                .map(|s| memchr::memmem::Finder::new(s.as_bytes()).into_owned())
                .collect(),
            ends_with_star: p.ends_with('*'),
        }
    }

    fn matches(&self, text: &str) -> bool {
        let text = text.as_bytes();
        let n = self.parts.len();
        let mut pos = 0;
        for (i, part) in self.parts.iter().enumerate() {
            let needle = part.needle();
            let last = i + 1 == n;
            if i == 0 && self.anchored_start {
                if !text.starts_with(needle) {
                    return false;
                }
                pos = needle.len();
                if last && self.anchored_end && !self.ends_with_star {
                    return pos == text.len();
                }
            } else if last && self.anchored_end && !self.ends_with_star {
                return text.len() >= pos + needle.len() && text.ends_with(needle);
            } else {
                match part.find(&text[pos..]) {
                    Some(at) => pos += at + needle.len(),
                    None => return false,
                }
            }
        }
        // `^$`-style patterns with no literal part match only the empty text.
        !(n == 0 && self.anchored_start && self.anchored_end && !self.ends_with_star)
            || text.is_empty()
    }
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
                    self.patterns.push(Pattern::new(p));
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
                        .any(|s| p.matches(s))
                })
            })
            .map(|p| p.text.as_str())
    }
}

/// Whether LSan-style `pattern` matches `text`.
pub fn matches(pattern: &str, text: &str) -> bool {
    Pattern::new(pattern).matches(text)
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
        assert!(matches("^*foo", "xfoox"));
        assert!(matches("^foo*$", "foobar"));
        assert!(matches("^foo$", "foo"));
        assert!(!matches("^foo$", "foox"));
        assert!(matches("^a*b*c$", "aXbYc"));
        assert!(!matches("^a*b*c$", "aXcYb"));
        assert!(matches("ab*ab", "abab"));
        assert!(!matches("ab*ab", "aba"));
        assert!(matches("*", "anything"));
        assert!(matches("^$", ""));
        assert!(!matches("^$", "x"));
        assert!(matches("é*ü", "xéyüz"));
    }
}
