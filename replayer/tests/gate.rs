//! The regression gate's decision rule.

use replayer::gate::{compare, parse_threshold};
use replayer::run::Outcome;
use replayer::RunResult;

fn outcome(name: &str, rss: &[u64], wall: &[u64]) -> Outcome {
    Outcome {
        allocator: name.into(),
        runs: rss
            .iter()
            .zip(wall)
            .map(|(&r, &w)| RunResult {
                peak_rss_bytes: r,
                wall_ns: w,
                fragmentation_at_peak: 1.2,
                ..Default::default()
            })
            .collect(),
    }
}

#[test]
fn thresholds_parse() {
    assert_eq!(parse_threshold("5%"), Ok(0.05));
    assert_eq!(parse_threshold("0.1"), Ok(0.1));
    assert!(parse_threshold("-3%").is_err());
    assert!(parse_threshold("x").is_err());
}

#[test]
fn worse_beyond_threshold_and_spread_fails_naming_metric_and_trace() {
    let a = outcome("glibc", &[100, 101, 102], &[1000, 1000, 1000]);
    let b = outcome("new", &[120, 121, 122], &[1010, 1000, 1020]);
    let r = compare("t.atrace", &a, &b, 0.05);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].metric, "peak_rss_bytes");
    assert_eq!(r[0].trace, "t.atrace");
    assert!(r[0]
        .to_string()
        .contains("peak_rss_bytes regressed on t.atrace"));
}

#[test]
fn differences_within_the_spread_pass() {
    // +20% median, but runs vary by 50: noise, not a regression.
    let a = outcome("glibc", &[100, 100, 150], &[1, 1, 1]);
    let b = outcome("new", &[120, 120, 121], &[1, 1, 1]);
    assert!(compare("t", &a, &b, 0.05).is_empty());
    // Better is never a regression.
    assert!(compare("t", &b, &a, 0.0)
        .iter()
        .all(|r| r.metric != "wall_ns"));
}
