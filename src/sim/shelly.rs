//! The simulated Shelly Uni (Gen1, SHUNI-1) like a real one: CoIoT status repeated periodically
//! with the same serial, a packet at once on every change of IN_1 with a new serial, a validity
//! option of 2.5 periods, the event counter advancing at release (`S`, or `L` when the chime input
//! is held past the long-push time). With a broker it publishes the same presses over MQTT as a
//! Gen1 device does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{SimOptions, SimState};
use crate::ring::coiot;

/// Shelly Gen1 default "long push" time: a longer hold is reported as `L`.
const LONGPUSH: Duration = Duration::from_millis(800);

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

/// The Gen1 MQTT id of a CoIoT id: `SHUNI-1#C45BBE6B9A12#2` -> `shellyuni-C45BBE6B9A12`.
pub fn gen1_mqtt_id(shelly_id: &str) -> String {
    let mac = shelly_id.split('#').nth(1).unwrap_or(shelly_id);
    format!("shellyuni-{mac}")
}

/// The simulated Shelly's MQTT side: a client whose event loop runs in its own task.
struct Mqtt {
    client: AsyncClient,
    base: String,
}

impl Mqtt {
    fn start(opts: &SimOptions, shutdown: CancellationToken) -> Option<Mqtt> {
        let (host, port) = opts.shelly_mqtt.clone()?;
        let id = gen1_mqtt_id(&opts.shelly_id);
        let base = format!("shellies/{id}");
        let mut o = MqttOptions::new(format!("sim-{id}"), host, port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_last_will(LastWill::new(format!("{base}/online"), "false", QoS::AtLeastOnce, true));
        let (client, mut ev) = AsyncClient::new(o, 64);
        let c = client.clone();
        let online = format!("{base}/online");
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = ev.poll() => match r {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                            let _ = c.try_publish(online.clone(), QoS::AtLeastOnce, true, "true");
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    },
                }
            }
        });
        Some(Mqtt { client, base })
    }

    fn publish(&self, sub: &str, payload: String) {
        let _ = self.client.try_publish(format!("{}/{sub}", self.base), QoS::AtLeastOnce, false, payload);
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
    let mqtt = Mqtt::start(&opts, shutdown.clone());
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
                if let Some(m) = &mqtt {
                    m.publish("input/0", "1".into());
                }
                tokio::select! {
                    _ = tokio::time::sleep(opts.chime) => {}
                    _ = shutdown.cancelled() => return,
                }
                uni.level = false;
                uni.cnt += 1;
                uni.event = if opts.chime >= LONGPUSH { "L" } else { "S" };
                uni.serial = uni.serial.wrapping_add(1);
                let d = uni.datagram(&opts);
                send(&sock, &state, &d).await;
                if let Some(m) = &mqtt {
                    m.publish("input/0", "0".into());
                    m.publish("input_event/0", format!("{{\"event\":\"{}\",\"event_cnt\":{}}}", uni.event, uni.cnt));
                }
            }
        }
    }
}
