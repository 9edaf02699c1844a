//! A full data directory, end to end: the bridge (its own process) keeps its data on a small
//! tmpfs that the test fills. Rings keep coming over the event stream with ids never issued
//! before, across a `kill -9` and a restart on the still-full disk; `/api/status` and `/metrics`
//! say the storage is failing; pictures the disk refused are served from memory; once space is
//! back, the state returns to ok.
//!
//! Mounting a tmpfs needs root: without it this test fails rather than skip.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::sim::{Sim, SimOptions};
use serde_json::{json, Value};

#[path = "support/bridge_process.rs"]
mod bridge_process;
use bridge_process::{free_tcp, free_udp, Bridge, Tmpfs};

/// Rings `n` times, each awaited on the event stream; returns their ids.
async fn ring(sim: &Sim, http: SocketAddr, n: usize) -> Vec<u64> {
    let mut resp = reqwest::get(format!("http://{http}/api/events")).await.unwrap();
    let mut buf = String::new();
    let mut ids = Vec::new();
    for _ in 0..n {
        sim.ring();
        let deadline = Instant::now() + Duration::from_secs(10);
        'wait: loop {
            while let Some(i) = buf.find("\n\n") {
                let block: String = buf.drain(..i + 2).collect();
                if block.contains("event: ring") {
                    let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                    let v: Value = serde_json::from_str(data).unwrap();
                    ids.push(v["id"].as_u64().unwrap());
                    break 'wait;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, resp.chunk()).await.expect("ring event in time").unwrap().unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
        // Past the simulated chime, so the next press is a press of its own.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rings_keep_unique_ids_on_a_full_disk_across_kill_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("data"), "4m");
    let sim = Sim::start(SimOptions { chime: Duration::from_millis(50), ..SimOptions::default() }).await.unwrap();
    let (http_port, rtsp_port, coiot_port) = (free_tcp(), free_tcp(), free_udp());
    let opts = DemoOptions { http_port, rtsp_port, sim_port: 0, data_dir: None };
    let mut v = serde_json::to_value(demo_config(&opts, &sim)).unwrap();
    v["doorbell"]["password"] = json!(sim.opts.password);
    v["server"]["api_token"] = Value::Null;
    v["server"]["rtsp_password"] = Value::Null;
    v["mqtt"] = json!({});
    v["coiot"]["unicast_port"] = json!(coiot_port);
    v["ring"]["min_gap_ms"] = json!(0);
    v["onvif"]["enabled"] = json!(false);
    v["data_dir"] = json!(disk.0);
    v["log_level"] = json!("warn");
    let config = tmp.path().join("bridge.yaml");
    std::fs::write(&config, serde_yaml::to_string(&v).unwrap()).unwrap();
    sim.set_coiot_target(format!("127.0.0.1:{coiot_port}").parse().unwrap());
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();

    let mut ids = Vec::new();
    let bridge = Bridge::start(&config, http).await;
    ids.extend(ring(&sim, http, 2).await);
    assert_eq!(bridge.json("/api/status").await["storage"]["state"], "ok");

    let filler = disk.fill();
    let full = ring(&sim, http, 4).await;
    ids.extend(&full);
    // The disk refused the pictures: said in the status and the metrics, and served from memory.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = bridge.json("/api/status").await;
        if st["storage"]["state"] == "failing" {
            assert!(st["storage"]["detail"].as_str().unwrap().contains("No space left"), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "storage never reported failing: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = reqwest::get(format!("http://{http}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("doorbell_bridge_storage_ok 0"), "{metrics}");
    for id in &full {
        let r = reqwest::get(format!("http://{http}/api/rings/{id}/snapshot.jpg")).await.unwrap();
        assert_eq!(r.status(), 200, "picture of ring {id} on the full disk");
        let cc = r.headers()["cache-control"].to_str().unwrap().to_string();
        assert!(cc.contains("no-cache"), "{cc}");
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert!(etag.contains(&format!("-{id}-")), "{etag}");
    }

    // A crash, and a start on the still-full disk.
    bridge.kill9();
    let bridge = Bridge::start(&config, http).await;
    ids.extend(ring(&sim, http, 4).await);
    let st = bridge.json("/api/status").await;
    assert_eq!(st["storage"]["state"], "failing", "{st}");
    bridge.kill9();
    let bridge = Bridge::start(&config, http).await;
    ids.extend(ring(&sim, http, 2).await);

    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a ring id was issued twice: {ids:?}");

    // Space again: the next write succeeds and the state says so.
    std::fs::remove_file(filler).unwrap();
    ids.extend(ring(&sim, http, 1).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while bridge.json("/api/status").await["storage"]["state"] != "ok" {
        assert!(Instant::now() < deadline, "storage stayed failing after space came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    println!("ring ids: {ids:?}");
    drop(bridge);
    sim.stop().await;
    drop(disk);
}
