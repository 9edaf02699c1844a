//! How the app reaches a user: the prebuilt image (Dockerfile and workflow), the options as the
//! Supervisor itself checks them (its rule reproduced in tests/data/addon/supervisor_options.py),
//! what backups leave out, the minimum Home Assistant version, and the papers (LICENSE, README,
//! DOCS) in the words Home Assistant uses.

use std::io::Write;
use std::path::{Path, PathBuf};

#[path = "support/source_tree.rs"]
mod source_tree;
use source_tree::rust_files;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn repo(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn text(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&text(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The image

#[test]
fn config_names_the_prebuilt_image_the_workflow_publishes() {
    let cfg = yaml("addon/config.yaml");
    let image = cfg["image"].as_str().expect("config.yaml names a prebuilt image");
    assert_eq!(image, "ghcr.io/doorbell-bridge/{arch}-doorbell-bridge");

    let wf = yaml(".github/workflows/image.yaml");
    let steps = wf["jobs"]["build"]["steps"].as_array().unwrap();
    let build = steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("docker/build-push-action@")))
        .expect("a docker/build-push-action step");
    // From the repository: the root as the context, the app's Dockerfile.
    assert_eq!(build["with"]["context"], ".");
    assert_eq!(build["with"]["file"], "addon/Dockerfile");
    // Every architecture the app declares is built, on a runner of that architecture.
    let matrix = wf["jobs"]["build"]["strategy"]["matrix"]["include"].as_array().unwrap();
    let mut archs: Vec<&str> = matrix.iter().map(|m| m["arch"].as_str().unwrap()).collect();
    archs.sort();
    let mut declared: Vec<&str> = cfg["arch"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    declared.sort();
    assert_eq!(archs, declared);
    for m in matrix {
        let (arch, platform) = (m["arch"].as_str().unwrap(), m["platform"].as_str().unwrap());
        let expected = match arch {
            "amd64" => "linux/amd64",
            "aarch64" => "linux/arm64",
            other => panic!("unknown arch {other}"),
        };
        assert_eq!(platform, expected);
    }
    // The published name is config.yaml's, with {arch} filled in, tagged with the version.
    let meta = steps.iter().find(|s| s["id"] == "meta").unwrap()["run"].as_str().unwrap();
    assert!(meta.contains("image=\"ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/${{ matrix.arch }}-doorbell-bridge\""));
    let tags = build["with"]["tags"].as_str().unwrap();
    assert!(tags.contains("${{ steps.meta.outputs.image }}:${{ steps.meta.outputs.version }}"));
    assert_eq!(build["with"]["push"], "${{ startsWith(github.ref, 'refs/tags/v') }}");
}

#[test]
fn the_dockerfile_needs_nothing_from_the_network_but_pinned_packages() {
    let docker = text("addon/Dockerfile");
    let joined = docker.replace("\\\n", " ");
    for fetch in ["git clone", "curl ", "wget ", "ADD http", "cargo install"] {
        assert!(!joined.contains(fetch), "the Dockerfile fetches something ({fetch})");
    }
    // Every Debian package is pinned to a version.
    for l in joined.lines().filter(|l| l.contains("apt-get install")) {
        let after = &l[l.find("apt-get install").unwrap()..];
        let pkgs: Vec<&str> =
            after.split("&&").next().unwrap().split_whitespace().skip(2).filter(|w| !w.starts_with('-')).collect();
        assert!(!pkgs.is_empty(), "{l}");
        for p in pkgs {
            assert!(p.contains('='), "{p} is not pinned to a version");
        }
    }
    // The sources come from the build context, which .dockerignore keeps to what the build needs.
    for copy in
        ["COPY Cargo.toml Cargo.lock ./", "COPY src ./src", "COPY ha_integration/custom_components/doorbell_bridge"]
    {
        assert!(docker.contains(copy), "the Dockerfile lacks {copy:?}");
    }
    let ignore = text(".dockerignore");
    for keep in ["!Cargo.toml", "!Cargo.lock", "!src/", "!ha_integration/custom_components/"] {
        assert!(ignore.lines().any(|l| l == keep), ".dockerignore drops {keep}");
    }
}

/// Whether `.dockerignore` lets `path` (repository-relative) into the build context: the last
/// matching pattern decides, as in Docker. Only the pattern forms the file uses are understood.
fn in_context(ignore: &str, path: &str) -> bool {
    let mut included = true;
    for raw in ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (keep, pat) = match raw.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, raw),
        };
        let pat = pat.trim_end_matches('/');
        let matches = if pat == "*" {
            true
        } else if let Some(name) = pat.strip_prefix("**/") {
            assert!(!name.contains(['*', '?', '[']), ".dockerignore: {raw} is beyond this test's matcher");
            path.split('/').any(|c| c == name)
        } else {
            assert!(!pat.contains(['*', '?', '[']), ".dockerignore: {raw} is beyond this test's matcher");
            path == pat || path.starts_with(&format!("{pat}/"))
        };
        if matches {
            included = keep;
        }
    }
    included
}

/// Where the build stage's `COPY` lines (from the context) put a context file, if anywhere.
fn placed_in_build_stage(docker: &str, path: &str) -> Option<String> {
    let mut workdir = "/".to_string();
    let stage = docker.split("\nFROM ").nth(1).expect("a build stage after the first FROM");
    let mut found = None;
    for l in stage.lines() {
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.first().copied() {
            Some("WORKDIR") => workdir = words[1].trim_end_matches('/').to_string() + "/",
            Some("COPY") if !words[1].starts_with("--") => {
                let (srcs, dst) = (&words[1..words.len() - 1], words[words.len() - 1]);
                let dst = match dst.strip_prefix("./") {
                    Some(rel) => format!("{workdir}{rel}"),
                    None if dst == "." => workdir.clone(),
                    None => dst.to_string(),
                };
                let into_dir = dst.ends_with('/') || srcs.len() > 1;
                for s in srcs {
                    if path == *s {
                        let name = s.rsplit('/').next().unwrap();
                        found =
                            Some(if into_dir { format!("{}/{name}", dst.trim_end_matches('/')) } else { dst.clone() });
                    } else if let Some(rest) = path.strip_prefix(&format!("{s}/")) {
                        found = Some(format!("{}/{rest}", dst.trim_end_matches('/')));
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// The build context and the build stage's `COPY` lines hold every file `cargo build` reads:
/// the manifest, the sources, and what the sources include at compile time.
#[test]
fn the_build_context_holds_every_file_the_release_build_reads() {
    let docker = text("addon/Dockerfile");
    let ignore = text(".dockerignore");
    let rel = |p: &Path| p.strip_prefix(ROOT).unwrap().to_string_lossy().replace('\\', "/");
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    if repo("build.rs").exists() {
        needed.push("build.rs".into());
    }
    let mut sources = Vec::new();
    rust_files(&repo("src"), &mut sources);
    for f in &sources {
        needed.push(rel(f));
        // Files included at compile time, outside the test modules (which close each file).
        let code = std::fs::read_to_string(f).unwrap();
        let code = code.split("#[cfg(test)]").next().unwrap();
        for mac in ["include_bytes!(\"", "include_str!(\""] {
            for part in code.split(mac).skip(1) {
                let target = part.split('"').next().unwrap();
                let abs = f.parent().unwrap().join(target);
                let abs = abs.canonicalize().unwrap_or_else(|e| panic!("{}: {target}: {e}", f.display()));
                needed.push(rel(&abs));
            }
        }
    }
    assert!(needed.iter().any(|n| n.starts_with("tests/")), "the include_bytes! scan found nothing: is it broken?");
    for n in &needed {
        assert!(in_context(&ignore, n), "{n} is needed by the build but .dockerignore leaves it out");
        assert_eq!(placed_in_build_stage(&docker, n), Some(format!("/src/{n}")), "{n} is not copied to /src/{n}");
    }
    // The bundled integration, without caches; nothing else of the checkout.
    let manifest = "ha_integration/custom_components/doorbell_bridge/manifest.json";
    assert!(in_context(&ignore, manifest));
    assert_eq!(
        placed_in_build_stage(&docker, manifest).as_deref(),
        Some("/out/custom_components/doorbell_bridge/manifest.json")
    );
    for out in [
        "ha_integration/custom_components/doorbell_bridge/__pycache__/x.pyc",
        "target/release/doorbell-bridge",
        ".git/HEAD",
        "tests/addon.rs",
        ".cache/x",
    ] {
        assert!(!in_context(&ignore, out), "{out} is sent to the builder");
    }
}

/// The pinned package versions must still be installable: each is the candidate of the Debian
/// release the build stage is based on (rust:<v>-bookworm), checked against this machine's apt
/// when it runs that release.
#[test]
fn pinned_packages_are_the_releases_current_versions() {
    let docker = text("addon/Dockerfile");
    let from = docker.lines().find(|l| l.starts_with("FROM rust:")).expect("a rust build stage");
    let release = from.split_whitespace().nth(1).unwrap().rsplit('-').next().unwrap();
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    assert!(
        os.lines().any(|l| l == format!("VERSION_CODENAME={release}")),
        "this check needs a Debian {release} machine (the build stage's release); /etc/os-release:\n{os}"
    );
    let pins: Vec<(String, String)> = docker
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(p, v)| {
            !p.is_empty()
                && !p.starts_with('-')
                && v.chars().next().is_some_and(|c| c.is_ascii_digit())
                && !p.contains('_')
        })
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect();
    // No pins is right only when the image installs no Debian package at all.
    if pins.is_empty() {
        assert!(!docker.contains("apt-get install"), "packages installed without pinned versions");
    }
    for (pkg, version) in pins {
        let out = Command::new("apt-cache").args(["madison", &pkg]).output().expect("apt-cache");
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.lines().any(|l| l.split('|').nth(1).map(str::trim) == Some(version.as_str())),
            "{pkg}={version} is not in {release}'s archive any more:\n{table}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The Supervisor's own checks

/// Runs the reproduction of the Supervisor's option and backup rules.
fn supervisor_check(request: &Value) -> Value {
    let python = std::env::var("DOORBELL_BRIDGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(repo("tests/data/addon/supervisor_options.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test installs it): {e}"));
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(3), "pip install voluptuous (scripts/test does it in its venv)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn options_error(options: &Value) -> Option<String> {
    let cfg = yaml("addon/config.yaml");
    let r = supervisor_check(&json!({"schema": cfg["schema"], "options": options}));
    r["error"].as_str().map(str::to_string)
}

#[test]
fn the_supervisor_refuses_an_app_without_a_doorbell_address() {
    let cfg = yaml("addon/config.yaml");
    let shipped = cfg["options"].clone();

    // As installed: the address is missing, so the Supervisor neither saves nor starts.
    let e = options_error(&shipped).expect("the shipped options must not pass without an address");
    assert!(e.contains("Missing option 'host' in doorbell"), "{e}");

    // Emptied or blank in the UI (or the API): refused by the type, not only by the bridge.
    for bad in ["", " ", "\t"] {
        let mut o = shipped.clone();
        o["doorbell"]["host"] = json!(bad);
        let e = options_error(&o).unwrap_or_else(|| panic!("host {bad:?} passed the Supervisor's check"));
        assert!(e.contains("does not match regular expression"), "{e}");
    }

    // Filled in: the rest of the shipped options pass as they are.
    for good in ["192.168.1.40", "doorbell.lan", "fd00::40"] {
        let mut o = shipped.clone();
        o["doorbell"]["host"] = json!(good);
        o["doorbell"]["password"] = json!("ABCDEF");
        assert_eq!(options_error(&o), None, "host {good:?} was refused");
    }

    // The integration install is on by default and shown (required, not under "unused optional").
    assert_eq!(shipped["install_integration"], true);
    assert_eq!(cfg["schema"]["install_integration"], "bool");
    let mut o = shipped.clone();
    o["doorbell"]["host"] = json!("192.168.1.40");
    o["install_integration"] = json!(false);
    assert_eq!(options_error(&o), None, "turning the install off is accepted");
    o.as_object_mut().unwrap().remove("install_integration");
    assert!(options_error(&o).unwrap().contains("install_integration"));

    // The reproduction does reject what the Supervisor rejects elsewhere too.
    let mut o = shipped;
    o["doorbell"]["host"] = json!("192.168.1.40");
    o["server"] = json!({"http_port": 70000});
    assert!(options_error(&o).is_some(), "a port out of range passed");
}

#[test]
fn backups_leave_out_pictures_but_keep_the_ring_index_and_credentials() {
    let cfg = yaml("addon/config.yaml");
    // Paths as the Supervisor sees an app's data directory on the host.
    let base = "/data/addons/data/doorbell_bridge";
    let pictures = ["rings/41.jpg", "rings/1.jpg", "motion/20261130T001500.123Z.jpg"];
    let kept = ["rings/index.json", "credentials.json", "onvif_subscription.json", "options.json", "rings"];
    let paths: Vec<String> = pictures.iter().chain(kept.iter()).map(|p| format!("{base}/{p}")).collect();
    let r = supervisor_check(&json!({
        "schema": {}, "options": {}, "backup_exclude": cfg["backup_exclude"], "paths": paths,
    }));
    let excluded: Vec<&str> = r["excluded"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let expected: Vec<String> = pictures.iter().map(|p| format!("{base}/{p}")).collect();
    assert_eq!(excluded, expected);
}

// ---------------------------------------------------------------------------------------------
// The minimum Home Assistant version

/// What the integration uses, and the first Home Assistant release that has it.
const NEEDS: &[(&str, &str)] = &[
    ("AddConfigEntryEntitiesCallback", "2025.2.0"),
    ("OptionsFlowWithReload", "2025.8.0"),
    // Local brand images of custom integrations (the integration's brand/ folder).
    ("brand/", "2026.3.0"),
];

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn the_minimum_home_assistant_covers_what_the_integration_uses() {
    let cfg = yaml("addon/config.yaml");
    let min = cfg["homeassistant"].as_str().expect("config.yaml sets homeassistant: (the minimum version)");
    let dir = repo("ha_integration/custom_components/doorbell_bridge");
    let mut sources = String::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "py") {
            sources.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    let mut used = Vec::new();
    for (what, since) in NEEDS {
        let uses = match what.strip_suffix('/') {
            Some(folder) => dir.join(folder).is_dir(),
            None => sources.contains(what),
        };
        if uses {
            used.push(*what);
            assert!(
                version_key(min) >= version_key(since),
                "the integration uses {what} (Home Assistant {since}+), config.yaml allows {min}"
            );
        }
    }
    assert!(!used.is_empty(), "none of the known features found: is the integration there?");
}

// ---------------------------------------------------------------------------------------------
// Papers and words

#[test]
fn license_readme_and_docs_are_there_in_home_assistants_words() {
    let license = text("LICENSE");
    assert!(license.starts_with("MIT License"), "LICENSE is the MIT licence");
    assert!(text("Cargo.toml").contains("license = \"MIT\""));

    // The "add repository" button of my.home-assistant.io, with this repository's URL.
    let url = yaml("repository.yaml")["url"].as_str().unwrap().to_string();
    let encoded = url.replace(':', "%3A").replace('/', "%2F");
    let link =
        format!("https://my.home-assistant.io/redirect/supervisor_add_addon_repository/?repository_url={encoded}");
    assert!(text("README.md").contains(&link), "README.md lacks the add-repository link {link}");

    let docs = text("addon/DOCS.md");
    let headings: Vec<&str> = docs.lines().filter(|l| l.starts_with("## ")).collect();
    for h in [
        "## Installation",
        "## Configuration",
        "## Wiring the Shelly Uni",
        "## Updating",
        "## Uninstalling",
        "## Support",
        "## License",
    ] {
        assert!(headings.contains(&h), "DOCS.md has no section {h:?}; it has {headings:?}");
    }
    // The wiring picture exists where DOCS points to it.
    let pic = docs
        .lines()
        .find_map(|l| l.split("](").nth(1).and_then(|r| r.split(')').next()).filter(|p| p.ends_with(".svg")))
        .expect("DOCS.md shows the wiring picture");
    assert!(repo("addon").join(pic).is_file(), "addon/{pic} is missing");
    assert!(!docs.to_lowercase().contains("hacs"), "DOCS.md must not offer HACS (it cannot install this integration)");

    // Home Assistant calls these apps now; the integration's own section is another's to word.
    let own_docs: String = {
        let mut out = String::new();
        let mut skip = false;
        for l in docs.lines() {
            if l.starts_with("## ") {
                skip = l == "## In Home Assistant";
            }
            if !skip {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    };
    for (name, body) in [
        ("addon/DOCS.md", own_docs),
        ("addon/README.md", text("addon/README.md")),
        ("addon/translations/en.yaml", text("addon/translations/en.yaml")),
        ("addon/config.yaml", text("addon/config.yaml")),
        ("README.md", text("README.md")),
    ] {
        let lower = body.to_lowercase();
        assert!(!lower.contains("add-on") && !lower.contains("addon "), "{name} says add-on; Home Assistant says app");
    }
}
