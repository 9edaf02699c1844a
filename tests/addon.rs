//! The Home Assistant add-on: its manifest against the add-on linter's schema and rules, its
//! options against the bridge's configuration, and the binary run exactly as the container runs
//! it (options.json in a data directory, `SUPERVISOR_TOKEN` set) against a Supervisor stand-in
//! on loopback and a real Mosquitto broker.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use doorbell_bridge::config::Config;

#[path = "support/standin.rs"]
mod standin;
use standin::{start_stand_in, NOTIFY_PATH, TOKEN};

const BIN: &str = env!("CARGO_BIN_EXE_doorbell-bridge");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn yaml_file(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The manifest

/// Keys the add-on linter rejects outright, beyond its schema.
const OBSOLETE_KEYS: &[&str] = &["watchdog", "auto_uart"];

#[test]
fn config_yaml_passes_the_schema_and_the_linter_rules() {
    let cfg = yaml_file("addon/config.yaml");
    let schema: Value =
        serde_json::from_slice(&std::fs::read(root().join("tests/data/addon/config.schema.json")).unwrap()).unwrap();

    // The schema itself, with the real validator.
    let python = std::env::var("DOORBELL_BRIDGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(root().join("tests/data/addon/validate_config.py"))
        .arg(root().join("tests/data/addon/config.schema.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test installs it): {e}"));
    child.stdin.take().unwrap().write_all(cfg.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(3), "pip install jsonschema (scripts/test does it in its venv)");
    assert!(
        out.status.success(),
        "addon/config.yaml does not match the add-on schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The linter's own rules: no key written with its default value, nothing obsolete.
    let obj = cfg.as_object().unwrap();
    for (key, value) in obj {
        if let Some(default) = schema["properties"][key].get("default") {
            assert_ne!(value, default, "'{key}' should be removed, it uses its default value");
        }
        assert!(!OBSOLETE_KEYS.contains(&key.as_str()), "'{key}' is obsolete (use the Dockerfile's HEALTHCHECK)");
    }
    for name in ["build.yaml", "build.yml", "build.json"] {
        assert!(!root().join("addon").join(name).exists(), "addon/{name} is deprecated: FROM goes in the Dockerfile");
    }

    // What this add-on needs from the Supervisor.
    assert_eq!(cfg["slug"], "doorbell_bridge");
    assert_eq!(cfg["arch"], json!(["aarch64", "amd64"]));
    assert_eq!(cfg["host_network"], true);
    assert_eq!(cfg["discovery"], json!(["doorbell_bridge"]));
    assert_eq!(cfg["services"], json!(["mqtt:want"]));
    assert_eq!(cfg["map"], json!(["homeassistant_config:rw"]));
    assert_eq!(cfg["homeassistant_api"], true);

    // The image is built from the tag of this version (see the Dockerfile).
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = cargo.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"');
    assert_eq!(cfg["version"], version, "addon/config.yaml version must equal Cargo.toml's");
    let changelog = std::fs::read_to_string(root().join("addon/CHANGELOG.md")).unwrap();
    assert!(changelog.contains(&format!("## {version}")), "CHANGELOG.md has no entry for {version}");
    let docker = std::fs::read_to_string(root().join("addon/Dockerfile")).unwrap();
    assert!(docker.contains(&format!("ARG BUILD_VERSION={version}\n")), "the Dockerfile's default version");
}

/// The Supervisor finds add-ons by their `config.yaml`: any other file of that name would be
/// taken for a second add-on.
#[test]
fn no_other_file_is_named_config_yaml() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | ".cache" | "node_modules") && !name.starts_with(".venv")
                {
                    walk(&p, found);
                }
            } else if matches!(name.as_str(), "config.yaml" | "config.yml" | "config.json") {
                found.push(p);
            }
        }
    }
    let mut found = Vec::new();
    walk(root(), &mut found);
    assert_eq!(found, vec![root().join("addon/config.yaml")]);
}

#[test]
fn repository_yaml_and_add_on_files_are_there() {
    let repo = yaml_file("repository.yaml");
    for key in ["name", "url", "maintainer"] {
        assert!(repo[key].as_str().is_some_and(|s| !s.is_empty()), "repository.yaml needs {key}");
    }
    for f in ["Dockerfile", "DOCS.md", "README.md", "CHANGELOG.md", "apparmor.txt", "translations/en.yaml"] {
        assert!(root().join("addon").join(f).is_file(), "addon/{f} is missing");
    }
    for (f, w, h) in [("icon.png", 128, 128), ("logo.png", 250, 100)] {
        let b = std::fs::read(root().join("addon").join(f)).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{f} is not a PNG");
        let dim = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!((dim(16), dim(20)), (w, h), "{f} size");
    }
    let docker = std::fs::read_to_string(root().join("addon/Dockerfile")).unwrap();
    for needle in ["io.hass.version", "io.hass.type=\"app\"", "io.hass.arch", "HEALTHCHECK", "doorbell_bridge"] {
        assert!(docker.contains(needle), "Dockerfile lacks {needle}");
    }
    let apparmor = std::fs::read_to_string(root().join("addon/apparmor.txt")).unwrap();
    assert!(apparmor.contains("profile doorbell_bridge"), "the AppArmor profile is named after the slug");
}

/// The profile the Supervisor loads must parse, or the add-on does not start on AppArmor hosts.
#[test]
fn apparmor_profile_parses() {
    let out = Command::new("apparmor_parser")
        .args(["--skip-kernel-load", "--skip-cache"])
        .arg(root().join("addon/apparmor.txt"))
        .output();
    let out =
        out.unwrap_or_else(|e| panic!("apparmor_parser (Debian package apparmor; scripts/test installs it): {e}"));
    assert!(out.status.success(), "addon/apparmor.txt does not parse:\n{}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// Options: config.yaml, translations and the bridge's configuration name the same keys

/// A name-keyed map in the bridge's configuration is a list of `{name, ...}` in the add-on UI.
const NAMED_LISTS: &[&str] = &["streams"];
/// Options the user must fill in: listed in `options` with an empty value.
const REQUIRED: &[&str] = &["doorbell.host", "doorbell.password"];

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

/// Every key path of the bridge's configuration, from its defaults.
fn config_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Value::Object(m) = v else { return };
    for (k, v) in m {
        let path = join(prefix, k);
        out.insert(path.clone());
        if NAMED_LISTS.contains(&path.as_str()) {
            out.insert(format!("{path}.name"));
            for item in v.as_object().unwrap().values() {
                config_keys(item, &path, out);
            }
        } else {
            config_keys(v, &path, out);
        }
    }
}

/// Key paths of an add-on `schema` (lists of dicts count their items' keys).
fn schema_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Value::Object(m) = v else { return };
    for (k, v) in m {
        let path = join(prefix, k);
        out.insert(path.clone());
        match v {
            Value::Object(_) => schema_keys(v, &path, out),
            Value::Array(a) => {
                if let Some(item) = a.first() {
                    schema_keys(item, &path, out)
                }
            }
            _ => {}
        }
    }
}

/// Key paths of `translations/en.yaml` (`configuration:`, nested under `fields:`); each entry
/// needs a name and a description.
fn translation_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Value::Object(m) = v else { return };
    for (k, v) in m {
        let path = join(prefix, k);
        for f in ["name", "description"] {
            assert!(v[f].as_str().is_some_and(|s| !s.trim().is_empty()), "translations: {path} has no {f}");
        }
        out.insert(path.clone());
        if let Some(fields) = v.get("fields") {
            translation_keys(fields, &path, out);
        }
    }
}

fn diff(what: &str, a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b).map(|k| format!("{what}: {k}")).collect()
}

#[test]
fn options_schema_translations_and_config_name_the_same_keys() {
    let addon = yaml_file("addon/config.yaml");
    let tr = yaml_file("addon/translations/en.yaml");
    let defaults = serde_json::to_value(Config::default()).unwrap();

    let (mut cfg, mut schema, mut trans) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    config_keys(&defaults, "", &mut cfg);
    schema_keys(&addon["schema"], "", &mut schema);
    translation_keys(&tr["configuration"], "", &mut trans);
    let mut problems = Vec::new();
    problems.extend(diff("in the bridge's config but not in config.yaml's schema", &cfg, &schema));
    problems.extend(diff("in config.yaml's schema but not in the bridge's config", &schema, &cfg));
    problems.extend(diff("in the schema but not translated in translations/en.yaml", &schema, &trans));
    problems.extend(diff("translated but not in the schema", &trans, &schema));
    let mut options = BTreeSet::new();
    schema_keys(&addon["options"], "", &mut options);
    problems.extend(diff("in options but not in the schema", &options, &schema));
    assert!(problems.is_empty(), "option keys disagree:\n  {}", problems.join("\n  "));
}

/// Looks a dotted path up in a JSON value.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

#[test]
fn options_hold_only_required_or_non_default_values_and_the_bridge_reads_them() {
    let addon = yaml_file("addon/config.yaml");
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let schema = &addon["schema"];

    // A scalar in `options` is required in the UI: only what the user must give, or a value
    // that differs from the bridge's own default.
    fn scalars(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                match v {
                    Value::Object(_) => scalars(v, &join(prefix, k), out),
                    Value::Array(_) => {}
                    _ => out.push((join(prefix, k), v.clone())),
                }
            }
        }
    }
    let mut found = Vec::new();
    scalars(&addon["options"], "", &mut found);
    for (path, value) in &found {
        if REQUIRED.contains(&path.as_str()) {
            let ty = at(schema, path).as_str().unwrap();
            assert!(!ty.ends_with('?'), "{path} is required: its schema type must not end with '?'");
        } else {
            assert_ne!(at(&defaults, path), value, "options.{path} repeats the bridge's default: leave it out");
        }
    }
    // Every optional scalar in the schema is `?` (the Supervisor then leaves it out of
    // options.json and the bridge's default applies).
    let mut typed = Vec::new();
    scalars(schema, "", &mut typed);
    for (path, ty) in typed {
        let ty = ty.as_str().unwrap();
        if !REQUIRED.contains(&path.as_str()) && at(&addon["options"], &path).is_null() {
            assert!(ty.ends_with('?'), "schema.{path} ({ty}) has no value in options, so it must be optional ('?')");
        }
    }

    // The options.json the Supervisor writes from these defaults, once the user filled in the
    // required fields, is a valid configuration with the bridge's defaults.
    let mut opts = addon["options"].clone();
    opts["doorbell"]["host"] = json!("192.0.2.10");
    opts["doorbell"]["password"] = json!("ABCDEF");
    let cfg = Config::parse(&opts.to_string()).unwrap_or_else(|p| panic!("the default options do not parse: {p}"));
    assert_eq!(cfg.streams, Config::default().streams);
    assert_eq!(cfg.doorbell.host, "192.0.2.10");
}

/// Each schema type gives values of the type the bridge reads (a `list(1|2)` would give the
/// string "1" to an integer field, for instance).
#[test]
fn every_schema_type_deserialises_into_the_bridge_config() {
    let addon = yaml_file("addon/config.yaml");
    fn sample(ty: &str) -> Value {
        let ty = ty.trim_end_matches('?');
        if ty == "bool" {
            json!(true)
        } else if ty == "port" {
            json!(8000)
        } else if let Some(r) = ty.strip_prefix("int(") {
            let min = r.split(',').next().unwrap_or("").parse::<i64>().unwrap_or(1);
            json!(min.max(1))
        } else if ty.starts_with("list(") {
            let first = ty.trim_start_matches("list(").split(['|', ')']).next().unwrap();
            json!(first)
        } else if ty == "url" {
            json!("http://192.0.2.10/onvif/snapshot.jpg")
        } else if ty.starts_with("match(") && ty.contains(":[0-9]") {
            json!("192.0.2.10:53") // IP:PORT
        } else if ty.starts_with("match(") && ty.contains("[0-9A-Fa-f:.]") {
            json!("192.0.2.10") // an IP address
        } else {
            json!("sample-value-1234567890")
        }
    }
    fn fill(schema: &Value) -> Value {
        match schema {
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), fill(v))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(fill).collect()),
            Value::String(s) => sample(s),
            other => other.clone(),
        }
    }
    let full = fill(&addon["schema"]);
    serde_json::from_value::<Config>(full)
        .unwrap_or_else(|e| panic!("a value of the schema's type does not fit the bridge's config: {e}"));
}

// ---------------------------------------------------------------------------------------------
// The binary as the container runs it

struct Env {
    dir: tempfile::TempDir,
    supervisor: SocketAddr,
}

impl Env {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn integration_src(&self) -> PathBuf {
        self.dir.path().join("bundled/doorbell_bridge")
    }
    fn ha_config(&self) -> PathBuf {
        self.dir.path().join("homeassistant")
    }
    fn installed(&self) -> PathBuf {
        self.ha_config().join("custom_components/doorbell_bridge")
    }

    fn new(supervisor: SocketAddr) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("homeassistant")).unwrap();
        Env { dir, supervisor }
    }

    /// Writes options.json as the Supervisor would: the add-on's options plus the user's.
    fn write_options(&self, options: &Value) {
        std::fs::write(self.data().join("options.json"), serde_json::to_vec_pretty(options).unwrap()).unwrap();
    }

    fn start(&self) -> Bridge {
        let mut child = Command::new(BIN)
            .env("SUPERVISOR_TOKEN", TOKEN)
            .env("DOORBELL_BRIDGE_SUPERVISOR_URL", format!("http://{}", self.supervisor))
            .env("DOORBELL_BRIDGE_ADDON_DATA", self.data())
            .env("DOORBELL_BRIDGE_INTEGRATION_SRC", self.integration_src())
            .env("DOORBELL_BRIDGE_HA_CONFIG", self.ha_config())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Bridge { child, log }
    }
}

struct Bridge {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Bridge {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "the log never said {needle:?}; it says:\n{log}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops it the way the Supervisor does (SIGTERM) and returns the whole log.
    async fn stop(mut self) -> String {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the bridge did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // The reader thread drains what is left.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log()
    }

    async fn exit_code(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status.code(), self.log());
            }
            assert!(Instant::now() < deadline, "the bridge did not exit; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The add-on's options as the Supervisor writes them, for a doorbell that does not answer and
/// no UDP listeners (tests run in parallel).
fn options(rtsp_port: u16) -> Value {
    let mut o = yaml_file("addon/config.yaml")["options"].clone();
    o["doorbell"]["host"] = json!("127.0.0.1");
    o["doorbell"]["password"] = json!("ABCDEF");
    o["doorbell"]["http_port"] = json!(9);
    o["doorbell"]["rtsp_port"] = json!(9);
    o["server"] = json!({"bind": "127.0.0.1", "http_port": 0, "rtsp_port": rtsp_port});
    o["coiot"] = json!({"enabled": false});
    o["onvif"] = json!({"enabled": false});
    o["log_level"] = json!("debug");
    o
}

// ---------------------------------------------------------------------------------------------
// The add-on's start-up

#[tokio::test]
async fn discovery_is_posted_once_per_start_with_the_same_token() {
    let (standin, addr) = start_stand_in(None).await;
    let env = Env::new(addr);
    let rtsp_port = free_port();
    env.write_options(&options(rtsp_port));

    let mut payloads = Vec::new();
    for run in 1..=2 {
        let bridge = env.start();
        bridge.wait_log("announced to Home Assistant").await;
        let http_port: u16 = {
            let log = bridge.log();
            let at = log.find("HTTP API on http://127.0.0.1:").expect("the log names the API address");
            log[at + "HTTP API on http://127.0.0.1:".len()..].split_whitespace().next().unwrap().parse().unwrap()
        };
        // Give a second post the time to happen, if there were one.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let log = bridge.stop().await;
        let posts = standin.calls_to("/discovery");
        assert_eq!(posts.len(), run, "one discovery per start");
        let p = posts.last().unwrap();
        assert!(p.authorized, "the discovery carries the Supervisor token");
        assert_eq!(p.method, "POST");
        assert_eq!(p.body["service"], "doorbell_bridge");
        let c = &p.body["config"];
        assert_eq!(c["host"], "127.0.0.1");
        assert_eq!(c["port"], http_port);
        assert_eq!(c["rtsp_port"], rtsp_port);
        let keys: BTreeSet<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["name", "host", "port", "rtsp_port", "api_token", "rtsp_username", "rtsp_password"])
        );
        // The doorbell's name (`doorbell.name`) becomes the entry's and the device's name.
        assert!(!c["name"].as_str().unwrap().is_empty());
        assert!(c["api_token"].as_str().unwrap().len() >= 32);
        assert_eq!(c["rtsp_username"], "viewer");
        // Secrets go to the Supervisor, never to the log.
        for secret in [&c["api_token"], &c["rtsp_password"]] {
            assert!(!log.contains(secret.as_str().unwrap()), "a secret is in the log");
        }
        assert!(!log.contains("ABCDEF"), "the doorbell's code is in the log");
        payloads.push(c.clone());
    }
    assert_eq!(payloads[0]["api_token"], payloads[1]["api_token"], "the token survives a restart");
    assert_eq!(payloads[0]["rtsp_password"], payloads[1]["rtsp_password"]);
    let stored: Value = serde_json::from_slice(&std::fs::read(env.data().join("credentials.json")).unwrap()).unwrap();
    assert_eq!(stored["api_token"], payloads[0]["api_token"], "the token is kept in the data directory");
}

#[tokio::test]
async fn discovery_is_retried_until_the_supervisor_takes_it() {
    let (standin, addr) = start_stand_in(None).await;
    *standin.discovery_failures.lock().unwrap() = 1;
    let env = Env::new(addr);
    env.write_options(&options(free_port()));
    let bridge = env.start();
    bridge.wait_log("discovery not sent, retrying").await;
    bridge.wait_log("announced to Home Assistant").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = bridge.stop().await;
    assert!(log.contains("starting"), "the Supervisor's reason is logged:\n{log}");
    let posts = standin.calls_to("/discovery");
    assert_eq!(posts.len(), 2, "one refused, one taken, no more");
    assert_eq!(posts[0].body, posts[1].body);
}

/// A real Mosquitto with a password file, on a free loopback port.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto(user: &str, password: &str) -> Mosquitto {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    let st = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd (Debian package mosquitto; scripts/test installs it)");
    assert!(st.success());
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n", pw.display()),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Mosquitto { child, port, _dir: dir }
}

#[tokio::test]
async fn mqtt_credentials_come_from_the_supervisor_when_none_are_configured() {
    let broker = start_mosquitto("addons", "mqtt-pass-from-supervisor");
    let service = json!({
        "addon": "core_mosquitto", "host": "127.0.0.1", "port": broker.port, "ssl": false,
        "protocol": "3.1.1", "username": "addons", "password": "mqtt-pass-from-supervisor",
    });
    let (standin, addr) = start_stand_in(Some(service)).await;
    let env = Env::new(addr);
    env.write_options(&options(free_port()));
    let bridge = env.start();
    bridge.wait_log(&format!("using Home Assistant's broker at 127.0.0.1:{} (user addons)", broker.port)).await;
    // The broker admits only that user: the bridge connecting and publishing its availability
    // proves the Supervisor's credentials are the ones in use.
    bridge.wait_log("connected to the MQTT broker").await;
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-u", "addons", "-P", "mqtt-pass-from-supervisor"])
        .args(["-t", "doorbell_bridge/availability", "-C", "1", "-W", "10"])
        .output()
        .expect("mosquitto_sub (Debian package mosquitto-clients)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "online", "{}", String::from_utf8_lossy(&out.stderr));
    let log = bridge.stop().await;
    let asks = standin.calls_to("/services/mqtt");
    assert_eq!(asks.len(), 1);
    assert!(asks[0].authorized);
    assert!(!log.contains("mqtt-pass-from-supervisor"), "the broker password is in the log:\n{log}");
    assert!(!log.contains("without MQTT"));

    // The Mosquitto add-on's host name may not resolve on the host network: its port is on the
    // host, so loopback is used.
    let service = json!({"host": "core-mosquitto.invalid", "port": broker.port, "username": "addons", "password": "p"});
    let (_standin, addr) = start_stand_in(Some(service)).await;
    let env = Env::new(addr);
    env.write_options(&options(free_port()));
    let bridge = env.start();
    bridge.wait_log(&format!("using 127.0.0.1:{}", broker.port)).await;
    bridge.wait_log("announced to Home Assistant").await;
    bridge.stop().await;

    // A broker in the options wins: the Supervisor is not asked.
    let (standin2, addr2) = start_stand_in(Some(json!({"host": "192.0.2.1", "port": 1883}))).await;
    let env2 = Env::new(addr2);
    let mut o = options(free_port());
    o["mqtt"] = json!({"host": "127.0.0.1", "port": broker.port, "username": "addons", "password": "x"});
    env2.write_options(&o);
    let bridge = env2.start();
    bridge.wait_log("announced to Home Assistant").await;
    let log = bridge.stop().await;
    assert!(standin2.calls_to("/services/mqtt").is_empty(), "configured MQTT must not be replaced");
    assert!(!log.contains("192.0.2.1"));
}

#[tokio::test]
async fn without_a_broker_it_runs_without_mqtt_and_says_so() {
    let (standin, addr) = start_stand_in(None).await;
    let env = Env::new(addr);
    env.write_options(&options(free_port()));
    let bridge = env.start();
    bridge.wait_log("running without MQTT").await;
    // It keeps running and serving.
    bridge.wait_log("announced to Home Assistant").await;
    let log = bridge.log();
    let at = log.find("HTTP API on http://").unwrap();
    let addr = log[at + "HTTP API on http://".len()..].split_whitespace().next().unwrap().to_string();
    let r = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let log = bridge.stop().await;
    assert_eq!(standin.calls_to("/services/mqtt").len(), 1);
    assert!(log.contains("no broker"), "the log says why:\n{log}");
}

fn write_bundled(env: &Env, version: &str, init_py: &str) {
    let src = env.integration_src();
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("translations")).unwrap();
    std::fs::create_dir_all(src.join("__pycache__")).unwrap();
    std::fs::write(
        src.join("manifest.json"),
        json!({"domain": "doorbell_bridge", "name": "Doorbell Bridge", "version": version}).to_string(),
    )
    .unwrap();
    std::fs::write(src.join("__init__.py"), init_py).unwrap();
    std::fs::write(src.join("translations/en.json"), "{}").unwrap();
    std::fs::write(src.join("__pycache__/x.pyc"), "junk").unwrap();
}

async fn run_install(env: &Env, expect: &str) -> String {
    let bridge = env.start();
    bridge.wait_log(expect).await;
    bridge.wait_log("announced to Home Assistant").await;
    bridge.stop().await
}

#[tokio::test]
async fn integration_install_is_idempotent_and_never_downgrades() {
    let (standin, addr) = start_stand_in(None).await;
    let env = Env::new(addr);
    let mut o = options(free_port());
    o["install_integration"] = json!(true);
    env.write_options(&o);
    let installed = env.installed();
    let notes = || standin.calls_to(NOTIFY_PATH);

    // Another integration beside ours, which no step may touch.
    let other = env.ha_config().join("custom_components/other_integration");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("__init__.py"), "# someone else's\n").unwrap();
    let other_state = || {
        let mut names: Vec<String> = std::fs::read_dir(installed.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        (names, std::fs::read_to_string(other.join("__init__.py")).unwrap())
    };

    // Fresh install, then a notification asking for a restart.
    write_bundled(&env, "0.2.0", "# 0.2.0\n");
    run_install(&env, "installed the integration 0.2.0").await;
    assert_eq!(std::fs::read_to_string(installed.join("__init__.py")).unwrap(), "# 0.2.0\n");
    assert!(installed.join("translations/en.json").is_file());
    assert!(!installed.join("__pycache__").exists(), "caches are not copied");
    assert_eq!(notes().len(), 1);
    let n = &notes()[0];
    assert!(n.authorized);
    assert!(n.body["message"].as_str().unwrap().contains("Restart Home Assistant"), "{:?}", n.body);

    // Same version again: nothing written (a local edit survives), no second notification.
    std::fs::write(installed.join("__init__.py"), "# edited\n").unwrap();
    run_install(&env, "is up to date").await;
    assert_eq!(std::fs::read_to_string(installed.join("__init__.py")).unwrap(), "# edited\n");
    assert_eq!(notes().len(), 1);

    // A newer bundled version replaces it.
    write_bundled(&env, "0.10.0", "# 0.10.0\n");
    run_install(&env, "updated the integration from 0.2.0 to 0.10.0").await;
    assert_eq!(std::fs::read_to_string(installed.join("__init__.py")).unwrap(), "# 0.10.0\n");
    assert_eq!(notes().len(), 2);
    let (names, other_init) = other_state();
    assert_eq!(names, ["doorbell_bridge", "other_integration"], "no temporary folders left behind");
    assert_eq!(other_init, "# someone else's\n");

    // A newer copy installed by hand (or HACS) is never overwritten by an older bundle.
    std::fs::write(
        installed.join("manifest.json"),
        json!({"domain": "doorbell_bridge", "name": "Doorbell Bridge", "version": "1.0.0"}).to_string(),
    )
    .unwrap();
    std::fs::write(installed.join("__init__.py"), "# 1.0.0 by hand\n").unwrap();
    run_install(&env, "newer than the bundled 0.10.0").await;
    assert_eq!(std::fs::read_to_string(installed.join("__init__.py")).unwrap(), "# 1.0.0 by hand\n");
    assert_eq!(notes().len(), 2);

    // Switched off: not touched at all.
    std::fs::remove_dir_all(&installed).unwrap();
    o["install_integration"] = json!(false);
    env.write_options(&o);
    let bridge = env.start();
    bridge.wait_log("announced to Home Assistant").await;
    bridge.stop().await;
    assert!(!installed.exists());
    assert_eq!(other_state(), (vec!["other_integration".to_string()], "# someone else's\n".to_string()));
}

#[tokio::test]
async fn with_the_install_off_a_newer_integration_is_told_once_per_version() {
    let (standin, addr) = start_stand_in(None).await;
    let env = Env::new(addr);
    let mut o = options(free_port());
    o["install_integration"] = json!(false);
    env.write_options(&o);
    let installed = env.installed();
    std::fs::create_dir_all(&installed).unwrap();
    let manifest = |v: &str| json!({"domain": "doorbell_bridge", "name": "Doorbell Bridge", "version": v}).to_string();
    std::fs::write(installed.join("manifest.json"), manifest("0.1.0")).unwrap();
    let notes = || standin.calls_to(NOTIFY_PATH);
    let start_once = || async {
        let bridge = env.start();
        bridge.wait_log("announced to Home Assistant").await;
        bridge.stop().await
    };

    // The same version as installed: nothing to tell.
    write_bundled(&env, "0.1.0", "# 0.1.0\n");
    start_once().await;
    assert!(notes().is_empty());

    // An update carries 0.2.0: told once, at the first start, and nothing is installed.
    write_bundled(&env, "0.2.0", "# 0.2.0\n");
    let log = start_once().await;
    assert!(log.contains("carries the integration 0.2.0, newer than the 0.1.0"), "{log}");
    assert_eq!(notes().len(), 1);
    assert!(notes()[0].body["message"].as_str().unwrap().contains("0.2.0"));
    assert!(!installed.join("__init__.py").exists(), "the install is off: nothing is copied");
    start_once().await;
    assert_eq!(notes().len(), 1, "told once per version");

    // The next version is told again.
    write_bundled(&env, "0.3.0", "# 0.3.0\n");
    start_once().await;
    assert_eq!(notes().len(), 2);
    assert_eq!(std::fs::read_to_string(installed.join("manifest.json")).unwrap(), manifest("0.1.0"));
}

#[tokio::test]
async fn bad_options_name_the_option_and_exit_2() {
    let (standin, addr) = start_stand_in(None).await;
    let env = Env::new(addr);

    // What the Supervisor writes when the user left the address empty and typed a short token.
    let mut o = options(free_port());
    o["doorbell"]["host"] = json!("");
    o["server"]["api_token"] = json!("tooshort-secret");
    env.write_options(&o);
    let (code, log) = env.start().exit_code().await;
    assert_eq!(code, Some(2), "bad options exit 2; log:\n{log}");
    assert!(log.contains("doorbell.host: required"), "{log}");
    assert!(log.contains("server.api_token: must be at least 16 characters"), "{log}");
    assert!(!log.contains("tooshort-secret"), "the token is in the log");

    // A wrong type (options.json edited by hand, or an old schema).
    o["doorbell"]["host"] = json!("192.0.2.10");
    o["server"] = json!({"bind": "127.0.0.1", "http_port": "eighty"});
    env.write_options(&o);
    let (code, log) = env.start().exit_code().await;
    assert_eq!(code, Some(2));
    assert!(log.contains("server.http_port"), "{log}");

    // Nothing is announced for a bridge that cannot start.
    assert!(standin.calls_to("/discovery").is_empty());
}

#[tokio::test]
async fn healthcheck_follows_the_bridge() {
    let (_standin, addr) = start_stand_in(None).await;
    let env = Env::new(addr);
    let port = free_port();
    let mut o = options(free_port());
    o["server"]["http_port"] = json!(port);
    env.write_options(&o);
    let health = || {
        Command::new(BIN)
            .arg("healthcheck")
            .env("DOORBELL_BRIDGE_ADDON_DATA", env.data())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(!health(), "nothing listens yet");
    let bridge = env.start();
    bridge.wait_log("HTTP API on").await;
    assert!(health());
    bridge.stop().await;
    assert!(!health());
}

/// The integration the image bundles (the Dockerfile copies this folder) installs as it is.
#[test]
fn the_bundled_integration_installs() {
    use doorbell_bridge::supervisor::{install_integration, manifest_version, InstallOutcome};
    let src = root().join("ha_integration/custom_components/doorbell_bridge");
    let version = manifest_version(&src).expect("the integration's manifest.json has a version");
    let ha = tempfile::tempdir().unwrap();
    let dst = ha.path().join("custom_components/doorbell_bridge");
    assert_eq!(install_integration(&src, &dst).unwrap(), InstallOutcome::Installed { version: version.clone() });
    for f in ["__init__.py", "manifest.json", "config_flow.py"] {
        assert!(dst.join(f).is_file(), "{f} not installed");
    }
    assert_eq!(install_integration(&src, &dst).unwrap(), InstallOutcome::UpToDate { version });
}
