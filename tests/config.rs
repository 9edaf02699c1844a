//! Hostile and careless configurations: duplicate keys, deep nesting, too many problems, bad
//! stream entries. Each is answered at once, with what and where.

use std::process::Command;
use std::time::{Duration, Instant};

use doorbell_bridge::config::{Config, MAX_CONFIG_BYTES, MAX_DEPTH, MAX_LISTED};

const BIN: &str = env!("CARGO_BIN_EXE_doorbell-bridge");

#[test]
fn a_duplicate_key_is_an_error_naming_the_key_and_line() {
    let text =
        "doorbell:\n  host: 192.0.2.10\n  password: ABCDEF\nserver:\n  http_port: 8565\ndoorbell:\n  name: Door\n";
    let p = Config::parse(text).unwrap_err().to_string();
    assert!(p.contains("duplicate key") && p.contains("doorbell") && p.contains("line 6"), "{p}");
    assert!(!p.contains("ABCDEF"), "{p}");
    // Nested too.
    let p = Config::parse("doorbell:\n  host: a\n  host: b\n").unwrap_err().to_string();
    assert!(p.contains("duplicate key") && p.contains("host") && p.contains("line 3"), "{p}");
    // And from the command line, exit 2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("duplicate key") && stdout.contains("line 6"), "{stdout}");
}

#[test]
fn deep_nesting_is_refused_at_once() {
    for text in [
        format!("doorbell: {{host: h}}\nx: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
        format!("x: {}1{}\n", "{a: ".repeat(50_000), "}".repeat(50_000)),
        (0..400).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect::<String>(),
        (0..2000).map(|i| format!("{}- \n", "  ".repeat(i % 60))).collect::<String>(),
    ] {
        let t0 = Instant::now();
        let p = Config::parse(&text).unwrap_err().to_string();
        assert!(t0.elapsed() < Duration::from_secs(1), "took {:?}", t0.elapsed());
        assert!(p.contains(&format!("nested deeper than {MAX_DEPTH} levels")), "{p}");
        assert!(p.contains("line "), "{p}");
    }
    // Just under the bound is still parsed (and refused for what it is).
    let ok = format!("doorbell: {{host: h}}\nx: {}{}\n", "[".repeat(MAX_DEPTH - 2), "]".repeat(MAX_DEPTH - 2));
    let p = Config::parse(&ok).unwrap_err().to_string();
    assert!(p.contains("unknown field `x`"), "{p}");
}

#[test]
fn oversized_input_is_refused_at_once() {
    let text = format!("doorbell: {{host: h}}\n#{}\n", "x".repeat(MAX_CONFIG_BYTES));
    let t0 = Instant::now();
    let p = Config::parse(&text).unwrap_err().to_string();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(p.contains(&format!("larger than {MAX_CONFIG_BYTES} bytes")), "{p}");
}

#[test]
fn the_65th_problem_is_counted_and_none_is_lost() {
    let mut text = String::from("doorbell: {host: 192.0.2.10}\n");
    for i in 0..70 {
        text.push_str(&format!("unknown_{i:03}: 1\n"));
    }
    let p = Config::parse(&text).unwrap_err();
    assert_eq!(p.0.len(), 70);
    for i in 0..70 {
        assert!(p.0.iter().any(|x| x.why.contains(&format!("unknown_{i:03}"))), "problem {i} lost");
    }
    let shown = p.to_string();
    assert!(shown.starts_with("70 problem(s)"), "{shown}");
    assert_eq!(shown.lines().filter(|l| l.starts_with("  - ")).count(), MAX_LISTED);
    assert!(shown.contains(&format!("... and {} more problem(s) not shown", 70 - MAX_LISTED)), "{shown}");
    // Exactly at the bound nothing is cut.
    let mut text = String::from("doorbell: {host: 192.0.2.10}\n");
    for i in 0..MAX_LISTED {
        text.push_str(&format!("unknown_{i:03}: 1\n"));
    }
    let shown = Config::parse(&text).unwrap_err().to_string();
    assert!(!shown.contains("not shown"), "{shown}");
}

#[test]
fn stream_entries_get_precise_messages() {
    let p = Config::parse(
        "doorbell: {host: h}\nstreams:\n  main: {path: /a, on_demand: maybe}\n  sub: {path: /b, extra: 1}\n  \
         ok: {path: /c}\n  bare: 5\n",
    )
    .unwrap_err();
    let paths: Vec<String> = p.0.iter().map(|x| format!("{x}")).collect();
    let has = |s: &str| paths.iter().any(|p| p.contains(s));
    assert!(has("streams.main.on_demand: invalid type"), "{paths:?}");
    assert!(has("streams.sub") && has("unknown field `extra`"), "{paths:?}");
    assert!(has("streams.bare: expected {path"), "{paths:?}");
    assert!(!has("streams.ok"), "{paths:?}");
    let p =
        Config::parse("doorbell: {host: h}\nstreams:\n  - name: front\n  - {name: back, path: /x, linger_secs: -1}\n")
            .unwrap_err();
    let paths: Vec<String> = p.0.iter().map(|x| format!("{x}")).collect();
    assert!(paths.iter().any(|p| p.contains("streams[0] (front): missing field `path`")), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("streams[1] (back).linger_secs: invalid value")), "{paths:?}");
    let p = Config::parse("doorbell: {host: h}\nstreams: 7\n").unwrap_err();
    assert!(p.0.iter().any(|x| x.path == "streams" && x.why.contains("a map of name")), "{p}");
}

#[test]
fn a_huge_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(4 * 1024 * 1024 * 1024).unwrap(); // sparse: 4 GiB of zeros
    let t0 = Instant::now();
    let p = Config::load(&path).unwrap_err().to_string();
    assert!(t0.elapsed() < Duration::from_secs(1), "took {:?}", t0.elapsed());
    assert!(p.contains(&format!("larger than {MAX_CONFIG_BYTES} bytes")), "{p}");
}

/// The commented `key: value` lines of a YAML file, with their section and key.
fn commented_keys(text: &str) -> Vec<(usize, String)> {
    keys(text, true)
}

/// The `key: value` lines of a YAML file (commented ones, or the others), with section and key.
fn keys(text: &str, commented: bool) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        if let Some((k, _)) = line.split_once(':').filter(|_| !line.starts_with([' ', '#'])) {
            section = k.to_string();
        }
        let trimmed = line.trim_start();
        let rest = if commented { trimmed.strip_prefix("# ") } else { Some(trimmed).filter(|t| !t.starts_with('#')) };
        let Some(rest) = rest else { continue };
        let Some((key, _)) = rest.split_once(": ").or_else(|| rest.strip_suffix(':').map(|k| (k, ""))) else {
            continue;
        };
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            out.push((i, format!("{section}.{key}")));
        }
    }
    out
}

#[test]
fn the_example_file_and_every_alternative_it_documents_load() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doorbell-bridge.example.yaml");
    let cfg = Config::load(&path).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!(cfg.doorbell.host, "192.0.2.10");
    let text = std::fs::read_to_string(&path).unwrap();
    let alternatives = commented_keys(&text);
    assert!(alternatives.iter().any(|(_, k)| k == "snapshot.url"), "{alternatives:?}");
    // One variant per commented line: it and the first alternative of every other key uncommented
    // together (some are documented as a set, e.g. generic_topic with generic_payload). A "..."
    // stands for the user's own value.
    for (chosen, chosen_key) in &alternatives {
        let mut taken = std::collections::BTreeSet::from([chosen_key.clone()]);
        let mut on = std::collections::BTreeSet::from([*chosen]);
        for (i, key) in &alternatives {
            if taken.insert(key.clone()) {
                on.insert(*i);
            }
        }
        // An alternative replaces the line that sets the same key.
        let replaced: std::collections::BTreeSet<usize> =
            keys(&text, false).into_iter().filter(|(_, k)| taken.contains(k)).map(|(i, _)| i).collect();
        let variant: String = text
            .lines()
            .enumerate()
            .filter(|(i, _)| !replaced.contains(i))
            .map(|(i, l)| {
                let l = if on.contains(&i) { l.replacen("# ", "", 1) } else { l.to_string() };
                l.replace("\"...\"", "\"a-value-of-the-user-s-own-choosing\"") + "\n"
            })
            .collect();
        if let Err(p) = Config::parse(&variant) {
            panic!("with `{chosen_key}` from line {}: {p}", chosen + 1);
        }
    }
    // `snapshot.url: ""` is the documented "none" (firmware 211101).
    let cfg = Config::parse("doorbell: {host: 192.0.2.10}\nsnapshot: {url: \"\"}\n").unwrap();
    assert_eq!(cfg.snapshot.url, doorbell_bridge::config::SnapshotUrl::None);
    let p = Config::parse("doorbell: {host: 192.0.2.10}\nsnapshot: {url: ftp://x/y}\n").unwrap_err().to_string();
    assert!(p.contains("snapshot.url"), "{p}");
}

/// `*_secs` settings are whole seconds outside and a `Duration` inside: they read and write back
/// as the same integers, and 0 is refused where it means nothing (all at once), kept where it means
/// "off" (`clips.pre_roll_secs`).
#[test]
fn seconds_settings_round_trip_and_zero_is_refused_where_documented() {
    let text = "doorbell: {host: h}\nserver: {rtsp_stall_secs: 3}\nstreams:\n  main: {path: /a, linger_secs: 7}\n\
                onvif: {pull_timeout_secs: 11, subscription_secs: 900}\nring: {pressed_max_secs: 4}\n\
                snapshot: {timeout_secs: 2, max_age_secs: 0}\nclips: {pre_roll_secs: 0, post_roll_secs: 5}\n";
    let cfg = Config::parse(text).unwrap();
    assert_eq!(cfg.server.rtsp_stall_secs, Duration::from_secs(3));
    assert_eq!(cfg.streams["main"].linger_secs, Duration::from_secs(7));
    assert_eq!(cfg.onvif.pull_timeout_secs, Duration::from_secs(11));
    assert_eq!(cfg.onvif.subscription_secs, Duration::from_secs(900));
    assert_eq!(cfg.ring.pressed_max_secs, Duration::from_secs(4));
    assert_eq!(cfg.snapshot.timeout_secs, Duration::from_secs(2));
    assert_eq!(cfg.snapshot.max_age_secs, Duration::ZERO);
    assert_eq!(cfg.clips.pre_roll_secs, Duration::ZERO);
    assert_eq!(cfg.clips.post_roll_secs, Duration::from_secs(5));
    // Written back as the same integers, and read again to the same values.
    let yaml = cfg.redacted_yaml();
    for line in
        ["rtsp_stall_secs: 3", "linger_secs: 7", "subscription_secs: 900", "timeout_secs: 2", "pre_roll_secs: 0"]
    {
        assert!(yaml.contains(line), "{line} not in\n{yaml}");
    }
    let again = Config::parse(&yaml).unwrap();
    assert_eq!(again.streams, cfg.streams);
    assert_eq!(again.onvif.subscription_secs, cfg.onvif.subscription_secs);
    assert_eq!(again.clips.post_roll_secs, cfg.clips.post_roll_secs);

    let p = Config::parse(
        "doorbell: {host: h}\nserver: {rtsp_stall_secs: 0}\nsnapshot: {timeout_secs: 0}\nclips: {post_roll_secs: 0}\n",
    )
    .unwrap_err();
    let all: Vec<String> = p.0.iter().map(|x| format!("{x}")).collect();
    for want in [
        "server.rtsp_stall_secs: must be at least 1",
        "snapshot.timeout_secs: must be at least 1",
        "clips.post_roll_secs: must be from 1 to 60",
    ] {
        assert!(all.iter().any(|x| x == want), "{want} not in {all:?}");
    }
    let p = Config::parse("doorbell: {host: h}\nsnapshot: {timeout_secs: -1}\n").unwrap_err();
    assert!(p.0.iter().any(|x| x.path == "snapshot.timeout_secs" && x.why.starts_with("invalid value")), "{p}");
}
