//! `/api/events`: Server-Sent Events. First `state`, then edges. A client that reconnects with
//! `Last-Event-ID` gets every kept event after that id, in order, then live ones: none lost, none
//! repeated. The stream ends when the bridge shuts down, so graceful shutdown never hangs on it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::{Bus, Record};

struct Cursor {
    bus: Arc<Bus>,
    backlog: VecDeque<Arc<Record>>,
    rx: tokio::sync::broadcast::Receiver<Arc<Record>>,
    last_sent: u64,
    first: Option<SseEvent>,
    shutdown: CancellationToken,
}

fn to_sse(rec: &Record) -> SseEvent {
    SseEvent::default().id(rec.id.to_string()).event(rec.name()).data(rec.data_json())
}

pub fn parse_last_event_id(v: Option<&axum::http::HeaderValue>) -> Option<u64> {
    v.and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok())
}

pub fn stream(
    bus: Arc<Bus>,
    last_event_id: Option<u64>,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let sub = bus.subscribe(last_event_id);
    let status = bus.report();
    let now_id = status.last_event_id;
    // The state's id is where replay starts: a client that drops right after it reconnects with
    // the same id and loses nothing.
    let (state_id, backlog) = match last_event_id {
        Some(after) if !sub.gap => (after, sub.backlog),
        _ => (now_id, Vec::new()),
    };
    let first = SseEvent::default()
        .id(state_id.to_string())
        .event("state")
        .data(serde_json::to_string(&status).unwrap_or_default());
    let cursor = Cursor { bus, backlog: backlog.into(), rx: sub.rx, last_sent: state_id, first: Some(first), shutdown };
    let s = futures::stream::unfold(cursor, |mut c| async move {
        if let Some(first) = c.first.take() {
            return Some((Ok(first), c));
        }
        loop {
            if let Some(rec) = c.backlog.pop_front() {
                if rec.id <= c.last_sent {
                    continue;
                }
                c.last_sent = rec.id;
                let ev = to_sse(&rec);
                return Some((Ok(ev), c));
            }
            tokio::select! {
                biased;
                _ = c.shutdown.cancelled() => return None,
                r = c.rx.recv() => match r {
                    Ok(rec) => {
                        if rec.id > c.last_sent {
                            c.last_sent = rec.id;
                            let ev = to_sse(&rec);
                            return Some((Ok(ev), c));
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Fell behind the channel: catch up from the history instead.
                        let (missed, _gap) = c.bus.since(c.last_sent);
                        c.backlog = missed.into();
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
