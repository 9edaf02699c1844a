//! A stand-in for the Home Assistant Supervisor on loopback, shared by the app's tests: it
//! records every call and answers discovery, the MQTT service and Core's notification service
//! as the Supervisor does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

pub const TOKEN: &str = "supervisor-token-for-tests";

#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub authorized: bool,
    pub body: Value,
}

#[derive(Clone)]
pub struct StandIn {
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// `data` of `GET /services/mqtt`; `None` answers as the Supervisor does without a broker.
    pub mqtt: Option<Value>,
    /// Discovery posts answered 503 before the Supervisor "comes up".
    pub discovery_failures: Arc<Mutex<u32>>,
}

impl StandIn {
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls.lock().unwrap().iter().filter(|c| c.path == path).cloned().collect()
    }
}

pub const NOTIFY_PATH: &str = "/core/api/services/persistent_notification/create";

async fn stand_in_handler(
    State(s): State<StandIn>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let authorized =
        headers.get("authorization").and_then(|h| h.to_str().ok()) == Some(format!("Bearer {TOKEN}").as_str());
    let path = uri.path().to_string();
    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.calls.lock().unwrap().push(Call { method: method.to_string(), path: path.clone(), authorized, body: body_json });
    if !authorized {
        return (StatusCode::UNAUTHORIZED, Json(json!({"result": "error", "message": "Unauthorized"}))).into_response();
    }
    match (method.as_str(), path.as_str()) {
        ("POST", "/discovery") => {
            let mut left = s.discovery_failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"result": "error", "message": "starting"})))
                    .into_response();
            }
            Json(json!({"result": "ok", "data": {"uuid": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}})).into_response()
        }
        ("GET", "/services/mqtt") => match &s.mqtt {
            Some(data) => Json(json!({"result": "ok", "data": data})).into_response(),
            None => (StatusCode::BAD_REQUEST, Json(json!({"result": "error", "message": "Service not enabled"})))
                .into_response(),
        },
        // Core's own reply, passed through by the Supervisor's proxy.
        ("POST", NOTIFY_PATH) => Json(json!([])).into_response(),
        _ => (StatusCode::NOT_FOUND, Json(json!({"result": "error", "message": "not found"}))).into_response(),
    }
}

pub async fn start_stand_in(mqtt: Option<Value>) -> (StandIn, SocketAddr) {
    let state = StandIn { calls: Arc::new(Mutex::new(Vec::new())), mqtt, discovery_failures: Default::default() };
    let app = axum::Router::new().fallback(stand_in_handler).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, addr)
}
