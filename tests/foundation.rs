//! The foundation, end to end over real sockets: configuration errors from the binary, API auth,
//! the event stream's order and replay, graceful shutdown, and hostile HTTP requests.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use doorbell_bridge::config::{Config, Secret};
use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::sim::{Sim, SimOptions};
use doorbell_bridge::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_doorbell-bridge");

struct Running {
    sim: Sim,
    http: SocketAddr,
    bus: std::sync::Arc<doorbell_bridge::events::Bus>,
    token: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<doorbell_bridge::error::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(tweak: impl FnOnce(&mut Config)) -> Running {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let opts = DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
    let mut cfg = demo_config(&opts, &sim);
    cfg.ring.min_gap_ms = 0;
    // These tests count every event on the stream: ONVIF sensor events would interleave.
    cfg.onvif.enabled = false;
    tweak(&mut cfg);
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    if let Some(a) = app.coiot_addr() {
        sim.set_coiot_target(a);
    }
    let http = app.http_addr();
    let bus = app.bus.clone();
    let token = app.access.api_token.expose().to_string();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    // `doorbell.online` follows the main stream's session: wait for it, so its `state` event is
    // not among the events a test counts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.status()["doorbell"]["online"] != true {
        assert!(Instant::now() < deadline, "the main stream did not start playing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Running { sim, http, bus, token, shutdown, task, _dir: dir }
}

/// A minimal SSE reader over a real HTTP connection.
struct SseClient {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: u64,
    event: String,
    data: serde_json::Value,
}

impl SseClient {
    async fn connect(http: SocketAddr, last_event_id: Option<u64>) -> SseClient {
        let mut req = reqwest::Client::new().get(format!("http://{http}/api/events"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        SseClient { resp, buf: String::new() }
    }

    /// The next event, or None at the end of the stream or after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut ev = SseEvent { id: 0, event: String::new(), data: serde_json::Value::Null };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data = serde_json::from_str(v.trim()).unwrap();
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(ev);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
                Err(_) => return None,
            }
        }
    }

    async fn next_of(&mut self, kind: &str, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let ev = self.next(left).await?;
            if ev.event == kind {
                return Some(ev);
            }
        }
    }
}

#[test]
fn check_config_reports_every_problem_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.yaml");
    std::fs::write(&path, "doorbell:\n  password: QWERTY\n  rtsp_port: not-a-port\nserver:\n  http_prot: 8565\n")
        .unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("doorbell.host"), "missing host not reported: {all}");
    assert!(all.contains("doorbell.rtsp_port"), "wrong type not reported: {all}");
    assert!(all.contains("server.http_prot"), "unknown key not reported: {all}");
    assert!(all.contains("3 problem"), "{all}");
    assert!(!all.contains("QWERTY"), "password leaked: {all}");
    assert!(!all.contains("not-a-port"), "values are not echoed: {all}");

    std::fs::write(&path, "doorbell:\n  host: 192.0.2.10\n  password: QWERTY\n").unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn running_with_a_bad_or_missing_config_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.yaml");
    std::fs::write(&path, "doorbell:\n  host: 192.0.2.10\n  password: 123456\n  port: 554\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("doorbell.port"), "{err}");
    assert!(!err.contains("123456"), "{err}");

    let out = Command::new(BIN).arg("--config").arg(dir.path().join("nope.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn options_json_and_defaults() {
    let cfg = Config::parse(
        r#"{"doorbell": {"host": "192.0.2.10", "password": "ABCDEF"},
            "streams": [{"name": "main", "path": "/Streaming/Channels/101/"},
                        {"name": "sub", "path": "/Streaming/Channels/102/", "on_demand": true, "linger_secs": 5}]}"#,
    )
    .unwrap();
    assert_eq!(cfg.doorbell.username, "admin");
    assert_eq!(cfg.doorbell.rtsp_port, 554);
    assert_eq!(cfg.server.rtsp_port, 8564);
    assert_eq!(cfg.server.http_port, 8565);
    assert_eq!(cfg.streams["sub"].linger_secs, Duration::from_secs(5));
    assert!(cfg.streams["sub"].on_demand);
    assert!(!cfg.streams["main"].on_demand);
    assert_eq!(cfg.doorbell.password, Secret::new("ABCDEF"));
    let shown = cfg.redacted_yaml() + &format!("{cfg:?}");
    assert!(!shown.contains("ABCDEF"), "{shown}");
    // An empty file is a config with one problem: the host.
    let p = Config::parse("").unwrap_err();
    assert_eq!(p.0.len(), 1);
    assert_eq!(p.0[0].path, "doorbell.host");
}

#[tokio::test]
async fn api_token_is_required_from_the_network() {
    let r = start(|c| {
        c.server.trust_loopback = false;
        c.server.api_token = Some(Secret::new("0123456789abcdef-token"));
    })
    .await;
    let c = reqwest::Client::new();
    let url = format!("http://{}/api/status", r.http);
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert!(body["detail"].as_str().unwrap().contains("Bearer"));

    let resp = c.get(&url).bearer_auth("0123456789abcdef-tokeX").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c.get(&url).header("Authorization", "Basic Zm9vOmJhcg==").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c.get(&url).bearer_auth("0123456789abcdef-token").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(!body.to_string().contains("0123456789abcdef-token"));
    // Every protected path, not just one.
    for path in ["/api/events", "/api/snapshot.jpg", "/api/rings/1/snapshot.jpg"] {
        let resp = c.get(format!("http://{}{path}", r.http)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = c.get(format!("http://{}/healthz", r.http)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn generated_token_guards_the_api_when_none_is_configured() {
    let r = start(|c| c.server.trust_loopback = false).await;
    assert!(r.token.len() >= 32);
    let c = reqwest::Client::new();
    let url = format!("http://{}/api/status", r.http);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(c.get(&url).bearer_auth(&r.token).send().await.unwrap().status(), 200);
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn status_has_the_contract_fields_with_unknown_sensors() {
    let r = start(|_| {}).await;
    let body: serde_json::Value =
        reqwest::get(format!("http://{}/api/status", r.http)).await.unwrap().json().await.unwrap();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    // ONVIF is off here: the playing main stream says the doorbell is there.
    assert_eq!(body["doorbell"]["online"], true, "{body}");
    assert_eq!(body["doorbell"]["online_source"], "rtsp", "{body}");
    assert_eq!(body["storage"], serde_json::json!({"state": "ok", "detail": null}));
    assert!(body["streams"].is_object());
    for s in ["pir_motion", "video_motion", "field_detection"] {
        assert!(body["sensors"][s].is_null(), "{s} must be unknown before any event: {body}");
    }
    assert!(body["sensors"].as_object().unwrap().contains_key("ring"));
    assert!(body.as_object().unwrap().contains_key("last_ring"));
    let metrics = reqwest::get(format!("http://{}/metrics", r.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("# TYPE doorbell_bridge_rings_total counter"));
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_press_reaches_the_event_stream_within_a_second_through_coiot() {
    let r = start(|_| {}).await;
    let mut sse = SseClient::connect(r.http, None).await;
    let first = sse.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.event, "state");
    // Wait until the simulated Shelly's baseline arrived, then press.
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.bus.state().sources.get("coiot") != Some(&true) {
        assert!(Instant::now() < deadline, "no CoIoT status from the simulated Shelly");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three presses; the fastest must arrive within a second (the others may be slowed by a busy
    // machine running the whole suite in parallel — speed figures live in docs/benchmarks.md).
    let mut fastest = Duration::MAX;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let pressed = Instant::now();
        reqwest::Client::new().post(format!("{}/sim/ring", r.sim.url())).send().await.unwrap();
        let ring = sse.next_of("ring", Duration::from_secs(5)).await.expect("a ring for the press");
        fastest = fastest.min(pressed.elapsed());
        assert_eq!(ring.data["source"], "coiot");
        assert_eq!(ring.data["press"], "rising");
        assert_eq!(ring.data["snapshot"], format!("/api/rings/{}/snapshot.jpg", ring.data["id"]));
        ids.push(ring.data["id"].as_u64().unwrap());
        // The release advances the Shelly's counter: it belongs to the same press, so no second ring.
        let again = sse.next_of("ring", Duration::from_millis(1200)).await;
        assert!(again.is_none(), "second ring for one press: {again:?}");
    }
    assert!(fastest < Duration::from_secs(1), "fastest press took {fastest:?}");
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ring ids increase by one: {ids:?}");
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn last_event_id_replays_exactly_what_was_missed() {
    let r = start(|_| {}).await;
    let t = chrono::Utc::now();
    let mut sse = SseClient::connect(r.http, None).await;
    let state = sse.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(state.event, "state");
    let mut seen = Vec::new();
    for i in 0..5 {
        r.bus.set_sensor(doorbell_bridge::domain::Sensor::VideoMotion, Some(i % 2 == 0), t);
    }
    for _ in 0..5 {
        let ev = sse.next(Duration::from_secs(2)).await.unwrap();
        seen.push(ev);
    }
    let last = seen.last().unwrap().id;
    drop(sse);
    // Events while the client is away.
    for i in 0..7 {
        r.bus.set_sensor(doorbell_bridge::domain::Sensor::FieldDetection, Some(i % 2 == 0), t);
    }
    r.bus.ring("test", None, t);
    let mut sse = SseClient::connect(r.http, Some(last)).await;
    let st = sse.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(st.event, "state", "the state comes first on every connection");
    assert_eq!(st.id, last, "the state carries the client's position");
    let mut replay = Vec::new();
    for _ in 0..8 {
        replay.push(sse.next(Duration::from_secs(2)).await.unwrap());
    }
    r.bus.set_sensor(doorbell_bridge::domain::Sensor::PirMotion, Some(true), t);
    let live = sse.next(Duration::from_secs(2)).await.unwrap();
    let ids: Vec<u64> = seen.iter().chain(&replay).chain(std::iter::once(&live)).map(|e| e.id).collect();
    let want: Vec<u64> = (ids[0]..ids[0] + ids.len() as u64).collect();
    assert_eq!(ids, want, "no event lost or repeated across the reconnect");
    assert_eq!(replay.last().unwrap().event, "ring");
    assert_eq!(live.data["name"], "pir_motion");
    assert!(sse.next(Duration::from_millis(200)).await.is_none(), "nothing more");
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let r = start(|_| {}).await;
    let mut sse = SseClient::connect(r.http, None).await;
    assert_eq!(sse.next(Duration::from_secs(2)).await.unwrap().event, "state");
    let started = Instant::now();
    r.shutdown.cancel();
    // The stream ends (None) rather than hanging, and the app returns promptly.
    assert!(sse.next(Duration::from_secs(5)).await.is_none());
    tokio::time::timeout(Duration::from_secs(5), r.task).await.expect("app stops").unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    r.sim.stop().await;
}

async fn raw(http: SocketAddr, req: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let _ = s.write_all(req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn hostile_requests_get_a_clear_4xx_and_nothing_breaks() {
    let r = start(|_| {}).await;
    let huge = format!("GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let resp = raw(r.http, huge.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "oversize head: {resp:.80}");

    let resp = raw(r.http, b"\x16\x03\x01garbage not http\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "malformed: {resp:.80}");

    let body = "x".repeat(200 * 1024);
    let big_post = format!(
        "POST /api/reboot HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    );
    let resp = raw(r.http, big_post.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "oversize body: {resp:.80}");

    let resp = raw(r.http, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 404"));
    assert!(resp.contains("\"error\":\"not_found\""));

    let resp = raw(r.http, b"GET /api/rings/abc/snapshot.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp:.80}");

    // A client that never finishes its head does not hold the server.
    let mut slow = tokio::net::TcpStream::connect(r.http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();

    let ok = reqwest::get(format!("http://{}/healthz", r.http)).await.unwrap();
    assert_eq!(ok.status(), 200);
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn connection_cap_never_keeps_a_newcomer_waiting_nor_closes_an_event_stream() {
    let r = start(|c| c.server.max_http_connections = 1).await;
    let mut sse = SseClient::connect(r.http, None).await;
    assert_eq!(sse.next(Duration::from_secs(2)).await.unwrap().event, "state");
    // Over the cap of one: the newcomers are served at once, and each displaces the one before it
    // that gave no credentials, never the (trusted) event stream.
    for _ in 0..3 {
        let url = format!("http://{}/healthz", r.http);
        let status = tokio::time::timeout(Duration::from_secs(2), reqwest::get(url)).await.unwrap().unwrap().status();
        assert_eq!(status, 200);
    }
    r.bus.set_sensor(doorbell_bridge::domain::Sensor::PirMotion, Some(true), chrono::Utc::now());
    let ev = sse.next(Duration::from_secs(2)).await.expect("the event stream is still open");
    assert_eq!(ev.data["name"], "pir_motion");
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[test]
fn demo_prints_its_urls_and_stops_cleanly_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--http-port", "0", "--rtsp-port", "0", "--sim-port", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut status_url = None;
    let mut ring_cmd = None;
    for _ in 0..40 {
        let Some(Ok(line)) = lines.next() else { break };
        if line.contains("/sim/ring") {
            ring_cmd = Some(line.clone());
        }
        if let Some(u) = line.split_whitespace().find(|w| w.ends_with("/api/status")) {
            status_url = Some(u.to_string());
        }
        if line.contains("credentials") {
            break;
        }
    }
    let status_url = status_url.expect("status URL printed");
    assert!(ring_cmd.is_some(), "the simulator's ring control is printed");
    let body: serde_json::Value = reqwest::blocking::get(&status_url).unwrap().json().unwrap();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn a_second_sigterm_exits_at_once_while_the_first_drains() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--http-port", "0", "--rtsp-port", "0", "--sim-port", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let status_url = (0..40)
        .map_while(|_| lines.next()?.ok())
        .find_map(|l| l.split_whitespace().find(|w| w.ends_with("/api/status")).map(str::to_string))
        .expect("status URL printed");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if l.contains(needle) {
                return;
            }
        }
        panic!("the bridge never said {needle:?}");
    };
    // A request head that never ends keeps the first stop draining (up to the head deadline).
    let addr = status_url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id().to_string();
    let term = || assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    term();
    wait_for("stopping");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the first SIGTERM did not drain: nothing left to prove");
    let second = Instant::now();
    term();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(second.elapsed() < Duration::from_secs(1), "a second SIGTERM did not exit at once");
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_for("exiting at once");
    assert_eq!(code, Some(1), "an abandoned drain is not a clean exit");
}
