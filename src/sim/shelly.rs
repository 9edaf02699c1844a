//! The simulated Shelly Uni: CoIoT status like a real one — a periodic repeat (same serial), a
//! packet at once on every change of IN_1 (new serial), the event counter advancing at release.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{SimOptions, SimState};
use crate::ring::coiot;

pub enum Cmd {
    /// A press of the doorbell button: IN_1 high for the chime time.
    Press,
    /// Send the current status now (a new peer was set).
    Announce,
}

struct Uni {
    level: bool,
    event: &'static str,
    cnt: u64,
    serial: u16,
    mid: u16,
}

impl Uni {
    fn datagram(&mut self, opts: &SimOptions) -> Vec<u8> {
        self.mid = self.mid.wrapping_add(1);
        let validity = (opts.coiot_period.as_secs_f64() * 2.5 * 10.0).min(65534.0) as u16;
        let payload = coiot::uni_payload(self.level, self.event, self.cnt);
        coiot::encode_status(self.mid, &opts.shelly_id, validity, self.serial, payload.as_bytes())
    }
}

async fn send(sock: &UdpSocket, state: &SimState, dgram: &[u8]) {
    let target = *state.coiot_target.lock().unwrap();
    if let Some(t) = target {
        if sock.send_to(dgram, t).await.is_ok() {
            state.coiot_sent.fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub async fn run(
    opts: SimOptions,
    state: Arc<SimState>,
    sock: UdpSocket,
    mut presses: tokio::sync::mpsc::UnboundedReceiver<Cmd>,
    shutdown: CancellationToken,
) {
    let mut uni = Uni { level: false, event: "S", cnt: 41, serial: 256, mid: 0x1a00 };
    let mut tick = tokio::time::interval(opts.coiot_period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let d = uni.datagram(&opts);
                send(&sock, &state, &d).await;
            }
            p = presses.recv() => {
                match p {
                    None => return,
                    Some(Cmd::Announce) => {
                        let d = uni.datagram(&opts);
                        send(&sock, &state, &d).await;
                        continue;
                    }
                    Some(Cmd::Press) => {}
                }
                uni.level = true;
                uni.serial = uni.serial.wrapping_add(1);
                let d = uni.datagram(&opts);
                send(&sock, &state, &d).await;
                tokio::select! {
                    _ = tokio::time::sleep(opts.chime) => {}
                    _ = shutdown.cancelled() => return,
                }
                uni.level = false;
                uni.cnt += 1;
                uni.event = "S";
                uni.serial = uni.serial.wrapping_add(1);
                let d = uni.datagram(&opts);
                send(&sock, &state, &d).await;
            }
        }
    }
}
