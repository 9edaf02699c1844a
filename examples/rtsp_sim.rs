//! The simulated doorbell alone (no bridge), for benchmarks that put a bridge or another proxy
//! in front of it: `cargo run --release --example rtsp_sim -- [HTTP_PORT [RTSP_PORT [SOUND]]]`,
//! SOUND one of `aac` (the default), `pcmu`, `pcma`, `none`.
//! Prints `rtsp=ADDR http=ADDR` once listening; runs until killed or stdin closes.

use doorbell_bridge::sim::{Sim, SimOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = |i: usize| args.get(i).map_or(0, |a| a.parse::<u16>().expect("a port number"));
    let opts = SimOptions {
        http_port: port(0),
        rtsp_port: port(1),
        audio: args.get(2).map_or(Default::default(), |a| a.parse().expect("a sound")),
        ..SimOptions::default()
    };
    let sim = Sim::start(opts).await.expect("the simulator starts");
    println!("rtsp={} http={}", sim.rtsp_addr, sim.http_addr);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Ends when the parent closes our stdin (or on Ctrl-C).
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut buf = String::new();
        while std::io::stdin().read_line(&mut buf).map(|n| n > 0).unwrap_or(false) {
            buf.clear();
        }
    });
    tokio::select! { _ = stdin_closed => {}, _ = tokio::signal::ctrl_c() => {} }
    sim.stop().await;
}
