//! The status as one typed definition: the committed JSON schema is the one the types give, the
//! live `/api/status` and the event stream's `state` of the simulated doorbell validate against it,
//! and the supervisor's restarts show in it.

use std::time::{Duration, Instant};

use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::sim::{Sim, SimOptions};
use doorbell_bridge::status::{schema_json, SCHEMA_FILE};
use doorbell_bridge::App;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn committed_schema() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_FILE);
    serde_json::from_str(&std::fs::read_to_string(path).expect("the committed schema")).unwrap()
}

/// Every way `body` breaks the committed schema.
fn violations(body: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(&committed_schema()).expect("a valid schema");
    validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[test]
fn committed_schema_is_the_one_the_types_give() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_FILE);
    let generated = schema_json();
    if std::env::var_os("UPDATE_STATUS_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{SCHEMA_FILE} differs from the status types; regenerate it with \
         UPDATE_STATUS_SCHEMA=1 cargo test --test status committed_schema"
    );
    // The schema is strict enough to catch a fixture that drifted.
    let mut bad = serde_json::json!({"version": "1", "doorbell": {"online": "yes"}});
    assert!(!violations(&bad).is_empty());
    bad["doorbell"]["online"] = true.into();
    assert!(violations(&bad).iter().any(|v| v.contains("sensors")), "{:?}", violations(&bad));
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo's bridge (ONVIF, talk, CoIoT, both streams) against the simulated doorbell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_status_validates_and_a_failed_task_is_restarted_and_counted() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let opts = DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
    let mut cfg = demo_config(&opts, &sim);
    cfg.ring.min_gap_ms = 0;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    sim.set_coiot_target(app.coiot_addr().expect("the demo listens for CoIoT"));
    let http = app.http_addr();
    let (bus, tasks) = (app.bus.clone(), app.tasks.clone());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(app.run(shutdown.clone()));
    let status_url = format!("http://{http}/api/status");

    wait_for("the doorbell online and a CoIoT status", Duration::from_secs(15), async || {
        let st = get_json(&status_url).await;
        st["doorbell"]["online"] == true && st["sources"]["coiot"] == true && st["doorbell"]["model"].is_string()
    })
    .await;
    let st = get_json(&status_url).await;
    assert_eq!(violations(&st), Vec::<String>::new(), "{st}");
    for (name, task) in st["tasks"].as_object().expect("tasks") {
        assert_eq!(task["restarts"], 0, "{name} ended on its own: {st}");
    }
    assert!(st["talk"].is_object() && st["coiot"].is_object() && st["streams"]["main"].is_object(), "{st}");

    // A ring: `last_ring` is then an object, and still valid.
    sim.ring();
    wait_for("a ring", Duration::from_secs(10), async || bus.state().last_ring.is_some()).await;
    let st = get_json(&status_url).await;
    assert_eq!(st["last_ring"]["source"], "coiot");
    assert_eq!(violations(&st), Vec::<String>::new(), "{st}");

    // The event stream's first `state` is the same body.
    let mut sse = reqwest::get(format!("http://{http}/api/events")).await.unwrap();
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(&String::from_utf8_lossy(&sse.chunk().await.unwrap().expect("an event")));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data:")).expect("a data line");
    let state: Value = serde_json::from_str(data.trim()).unwrap();
    assert_eq!(violations(&state), Vec::<String>::new(), "{state}");
    drop(sse);

    // The supervisor: the ring detector panics, is restarted, counted, and detects again.
    assert_eq!(st["tasks"]["ring_detector"]["restarts"], 0, "{st}");
    let rings_before = bus.state().last_ring.map(|r| r.id).unwrap();
    assert!(tasks.fail("ring_detector"));
    wait_for("the restart", Duration::from_secs(10), async || {
        let st = get_json(&status_url).await;
        st["tasks"]["ring_detector"]["restarts"] == 1 && st["tasks"]["ring_detector"]["running"] == true
    })
    .await;
    let st = get_json(&status_url).await;
    assert!(st["tasks"]["ring_detector"]["last_failure"].as_str().unwrap().contains("panicked"), "{st}");
    assert_eq!(st["tasks"]["rtsp"]["restarts"], 0, "{st}");
    assert_eq!(violations(&st), Vec::<String>::new(), "{st}");
    let metrics = reqwest::get(format!("http://{http}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("doorbell_bridge_task_restarts_total{task=\"ring_detector\"} 1"), "{metrics}");
    // The new detector may take the first status it hears as its baseline: press until it rings.
    let deadline = Instant::now() + Duration::from_secs(15);
    while bus.state().last_ring.is_none_or(|r| r.id <= rings_before) {
        assert!(Instant::now() < deadline, "no ring after the detector was restarted");
        sim.ring();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    shutdown.cancel();
    run.await.unwrap().unwrap();
    sim.stop().await;
}

/// With no ring source configured, no task ends on its own (the ring detector waits for
/// observations instead of being restarted over and over).
#[tokio::test]
async fn without_ring_sources_no_task_is_restarted() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let opts = DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
    let mut cfg = demo_config(&opts, &sim);
    cfg.coiot.enabled = false;
    cfg.onvif.enabled = false;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    let (bus, tasks) = (app.bus.clone(), app.tasks.clone());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(app.run(shutdown.clone()));
    // Longer than the first restart wait (`tasks::RESTART_MIN`) twice over.
    tokio::time::sleep(doorbell_bridge::tasks::RESTART_MIN * 3).await;
    let st = bus.status();
    assert_eq!(tasks.restarts("ring_detector"), Some(0), "{st}");
    for (name, task) in st["tasks"].as_object().expect("tasks") {
        assert_eq!(task["restarts"], 0, "{name} ended on its own: {st}");
    }
    assert!(st["tasks"].get("coiot").is_none(), "no CoIoT task without CoIoT: {st}");
    shutdown.cancel();
    run.await.unwrap().unwrap();
    sim.stop().await;
}
