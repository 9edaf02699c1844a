//! The app image's runtime without Docker: the release binary runs in a Debian minbase root of
//! the same release as the Dockerfile's final stage (scripts/runtime-root builds and caches it),
//! with the files placed where the Dockerfile's `COPY` lines put them, started as the Supervisor
//! starts it: its `ENTRYPOINT` with no arguments, `/data/options.json`, `SUPERVISOR_TOKEN`, Home
//! Assistant's config at `/homeassistant`. This catches a shared library or a glibc the image
//! lacks before a user does. The network is the machine's own (loopback is shared), as with the
//! app's `host_network: true`.
//!
//! Needs root (chroot and bind mounts in a private mount namespace).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use doorbell_bridge::sim::{Sim, SimOptions};

#[path = "support/standin.rs"]
mod standin;
use standin::{start_stand_in, NOTIFY_PATH, TOKEN};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The image's `PATH` (Debian's default for root).
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn repo(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

/// The final stage of addon/Dockerfile: its Debian release, what it copies from the build stage
/// (build-stage path -> image path) and its entrypoint.
struct FinalStage {
    release: String,
    copies: Vec<(String, String)>,
    entrypoint: Vec<String>,
    healthcheck: Vec<String>,
}

fn final_stage() -> FinalStage {
    let text = std::fs::read_to_string(repo("addon/Dockerfile")).unwrap();
    // Continuation lines joined, so HEALTHCHECK ... \ CMD [...] is one instruction.
    let joined = text.replace("\\\n", " ");
    let all: Vec<&str> = joined.lines().collect();
    let last_from = all.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM line");
    let lines = &all[last_from..];
    let image = lines[0].split_whitespace().nth(1).unwrap();
    let release = image
        .strip_prefix("debian:")
        .and_then(|t| t.split('-').next())
        .unwrap_or_else(|| panic!("the final stage is {image}, not debian:<release>[-slim]"))
        .to_string();
    let json_list = |l: &str| -> Vec<String> {
        let at = l.find('[').unwrap_or_else(|| panic!("{l}: not in exec form"));
        serde_json::from_str(&l[at..]).unwrap()
    };
    let mut copies = Vec::new();
    let (mut entrypoint, mut healthcheck) = (Vec::new(), Vec::new());
    for l in lines {
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.first().copied() {
            Some("COPY") => {
                assert_eq!(words[1], "--from=build", "the final stage copies only from the build stage: {l}");
                copies.push((words[2].to_string(), words[3].to_string()));
            }
            Some("ENTRYPOINT") => entrypoint = json_list(l),
            Some("HEALTHCHECK") => healthcheck = json_list(&l[l.find("CMD").unwrap()..]),
            _ => {}
        }
    }
    FinalStage { release, copies, entrypoint, healthcheck }
}

/// What the build stage leaves at each path the final stage copies, from this checkout.
fn built(stage_path: &str) -> PathBuf {
    match stage_path {
        "/out/bin/doorbell-bridge" => {
            let bin = repo("target/release/doorbell-bridge");
            assert!(bin.is_file(), "{} is missing: cargo build --release first (scripts/test does)", bin.display());
            bin
        }
        "/out/custom_components/doorbell_bridge" => repo("ha_integration/custom_components/doorbell_bridge"),
        other => panic!("the Dockerfile copies {other}, which this test does not know how to provide"),
    }
}

fn runtime_root(release: &str) -> PathBuf {
    let root = match std::env::var("DOORBELL_BRIDGE_RUNTIME_ROOT") {
        Ok(r) if !r.is_empty() => PathBuf::from(r),
        _ => {
            let out = Command::new(repo("scripts/runtime-root")).stderr(Stdio::inherit()).output().unwrap();
            assert!(out.status.success(), "scripts/runtime-root failed");
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        }
    };
    let version = std::fs::read_to_string(root.join("etc/debian_version")).expect("a Debian root");
    let codename = std::fs::read_to_string(root.join("etc/os-release")).unwrap();
    assert!(
        codename.lines().any(|l| l == format!("VERSION_CODENAME={release}")),
        "{} is Debian {version}, the Dockerfile's final stage is {release}",
        root.display()
    );
    root
}

/// Runs `argv` chrooted into `root` with `binds` (host path -> path in the image) mounted in a
/// private mount namespace: nothing stays mounted afterwards and the cached root is not written.
fn in_image(root: &Path, binds: &[(PathBuf, String)], env: &[(&str, String)], argv: &[String]) -> Command {
    // unshare, sh and chroot exec each other: the child's pid is the bridge's, as in a container.
    const SCRIPT: &str = r#"root="$1"; n="$2"; shift 2
mount --bind /proc "$root/proc" && mount --bind /dev "$root/dev" || exit 97
while [ "$n" -gt 0 ]; do mount --bind "$1" "$root$2" || exit 97; shift 2; n=$((n-1)); done
exec chroot "$root" "$@""#;
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c", SCRIPT, "sh"]);
    c.arg(root).arg(binds.len().to_string());
    for (host, inside) in binds {
        c.arg(host).arg(inside);
    }
    c.args(argv);
    c.env_clear().env("PATH", IMAGE_PATH);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Running {
    async fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log.lock().unwrap().clone();
            if log.contains(needle) {
                return log;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("the bridge exited ({st}) before saying {needle:?}; log:\n{log}");
            }
            assert!(Instant::now() < deadline, "the log never said {needle:?}; it says:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runtime_starts_passes_its_healthcheck_announces_and_serves_video() {
    let stage = final_stage();
    assert_eq!(stage.entrypoint, ["doorbell-bridge"], "the Supervisor starts the ENTRYPOINT with no arguments");
    assert_eq!(stage.healthcheck, ["doorbell-bridge", "healthcheck"]);
    let root = runtime_root(&stage.release);
    assert_eq!(euid(), 0, "this test needs root (chroot, mounts); scripts/test runs as root in CI");

    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let (standin, sup_addr) = start_stand_in(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (data, ha) = (dir.path().join("data"), dir.path().join("homeassistant"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&ha).unwrap();

    // options.json as the Supervisor writes it: the app's options plus what the user filled in.
    let addon: Value = serde_yaml::from_str(&std::fs::read_to_string(repo("addon/config.yaml")).unwrap()).unwrap();
    let (http_port, rtsp_port) = (free_port(), free_port());
    let mut o = addon["options"].clone();
    o["doorbell"]["host"] = json!("127.0.0.1");
    o["doorbell"]["password"] = json!(sim.opts.password);
    o["doorbell"]["http_port"] = json!(sim.http_addr.port());
    o["doorbell"]["rtsp_port"] = json!(sim.rtsp_addr().port());
    o["server"] = json!({"bind": "127.0.0.1", "http_port": http_port, "rtsp_port": rtsp_port});
    o["coiot"] = json!({"enabled": false});
    std::fs::write(data.join("options.json"), serde_json::to_vec_pretty(&o).unwrap()).unwrap();

    let mut binds: Vec<(PathBuf, String)> = stage.copies.iter().map(|(from, to)| (built(from), to.clone())).collect();
    binds.push((data.clone(), "/data".into()));
    binds.push((ha.clone(), "/homeassistant".into()));
    // The container reaches the Supervisor at http://supervisor; here it listens on loopback.
    let env =
        [("SUPERVISOR_TOKEN", TOKEN.to_string()), ("DOORBELL_BRIDGE_SUPERVISOR_URL", format!("http://{sup_addr}"))];
    let healthcheck = || {
        in_image(&root, &binds, &env, &stage.healthcheck)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(!healthcheck(), "the healthcheck passes with nothing running");

    let mut child = in_image(&root, &binds, &env, &stage.entrypoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let log = Arc::new(Mutex::new(String::new()));
    let (l, stderr) = (log.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = l.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut bridge = Running { child, log };
    bridge.wait_log(&format!("HTTP API on http://127.0.0.1:{http_port}")).await;
    bridge.wait_log("announced to Home Assistant").await;

    // The image's HEALTHCHECK, run inside the image as Docker runs it.
    assert!(healthcheck(), "the healthcheck fails while the bridge runs");

    // Discovery: one post, with the Supervisor's token, naming where the bridge listens.
    let posts = standin.calls_to("/discovery");
    assert_eq!(posts.len(), 1, "one discovery per start");
    assert!(posts[0].authorized);
    assert_eq!(posts[0].body["service"], "doorbell_bridge");
    assert_eq!(posts[0].body["config"]["port"], http_port);
    assert_eq!(posts[0].body["config"]["rtsp_port"], rtsp_port);

    // The integration went from where the image keeps it to Home Assistant's config (the
    // default), and a notification asks for the restart.
    let installed = ha.join("custom_components/doorbell_bridge");
    assert!(installed.join("manifest.json").is_file(), "the integration was not installed");
    let notes = standin.calls_to(NOTIFY_PATH);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].body["message"].as_str().unwrap().contains("Restart Home Assistant"));

    // A viewer on this machine reads video from the bridge in the image.
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/main");
    let out = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::process::Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-read_intervals", "%+2"])
            .args(["-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json"])
            .arg(&url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ffprobe finished in time")
    .expect("ffprobe (Debian package ffmpeg)");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let s = &j["streams"][0];
    assert_eq!(s["codec_name"], "h264", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(1536), Some(2048)));
    let frames: u64 = s["nb_read_frames"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(frames >= 10, "ffprobe decoded only {frames} frames");

    // Stopped as the Supervisor stops it: SIGTERM, then a clean exit.
    let pid = bridge.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = bridge.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the bridge did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = bridge.log.lock().unwrap().clone();
    assert!(status.success(), "exit {status} after SIGTERM; log:\n{log}");
    assert!(!log.contains(sim.opts.password.as_str()), "the doorbell's code is in the log");
    assert!(!healthcheck(), "the healthcheck still passes after the stop");
}

/// The effective user id, from /proc (no libc call needed).
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    uid.split_whitespace().nth(1).unwrap().parse().unwrap()
}
