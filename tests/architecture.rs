//! The layout's rules, checked on the source: no module but the API itself and `lib.rs` imports
//! the API; the configuration imports no capability; every dependency in Cargo.toml is used
//! (the check `cargo machete` makes: a crate named nowhere in the code is unused).

use std::path::{Path, PathBuf};

#[path = "support/source_tree.rs"]
mod source_tree;
use source_tree::rust_files;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `crate::NAME` a file names (imports and paths alike), comments left out.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            // `crate::{a, b::c}` names a and b.
            let group = rest.strip_prefix('{').map(|g| g.split('}').next().unwrap_or(""));
            for part in group.map(|g| g.split(',').collect()).unwrap_or_else(|| vec![rest]) {
                let name: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn only_the_api_and_lib_import_the_api() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offenders = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel.starts_with("api") || rel == Path::new("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        if crate_paths(&text).iter().any(|p| p == "api") {
            offenders.push(rel.display().to_string());
        }
    }
    assert!(files.len() > 20, "found the sources");
    assert!(offenders.is_empty(), "modules that import the API: {offenders:?}");
}

#[test]
fn the_configuration_imports_no_capability() {
    const CAPABILITIES: [&str; 9] = ["api", "mqtt", "onvif", "ring", "rtsp", "sim", "snapshot", "talk", "demo"];
    let mut files = vec![root().join("src/config.rs")];
    rust_files(&root().join("src/config"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for p in crate_paths(&text) {
            assert!(!CAPABILITIES.contains(&p.as_str()), "{} imports crate::{p}", f.display());
        }
    }
    assert_eq!(crate_paths("use crate::ring::coiot; // crate::api"), ["ring"], "the check sees imports, not comments");
    assert_eq!(crate_paths("use crate::{api::Commands, events};"), ["api", "events"]);
}

/// Dependencies of Cargo.toml (`[dependencies]` and `[dev-dependencies]`), as the code names them.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]" || t == "[dev-dependencies]";
            continue;
        }
        if in_deps && !t.is_empty() && !t.starts_with('#') {
            if let Some((name, _)) = t.split_once('=') {
                out.push(name.trim().replace('-', "_"));
            }
        }
    }
    out
}

#[test]
fn every_dependency_is_used() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let deps = dependencies(&manifest);
    assert!(deps.contains(&"tokio".to_string()) && deps.contains(&"tempfile".to_string()), "{deps:?}");
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples"] {
        if root().join(dir).is_dir() {
            rust_files(&root().join(dir), &mut files);
        }
    }
    let code: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect::<Vec<_>>().join("\n");
    // A crate the code names by another name than its package's.
    let named = |dep: &str| match dep {
        "md_5" => "md5".to_string(),
        other => other.to_string(),
    };
    let unused: Vec<&String> = deps
        .iter()
        .filter(|d| {
            let n = named(d);
            !(code.contains(&format!("{n}::")) || code.contains(&format!("use {n}")) || code.contains(&format!("{n}!")))
        })
        .collect();
    assert!(unused.is_empty(), "dependencies the code never names: {unused:?}");
}
