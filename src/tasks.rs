//! Every capability task in one owner. A task that returns or panics while the bridge runs is
//! logged, counted (`/api/status` `tasks`, `/metrics`) and started again after a backoff; on
//! shutdown every task is waited for (bounded) and whatever is left is aborted.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::events::StatusSource;
use crate::metrics::{Kind, Metrics};
use crate::status::{Status, TaskStatus};

/// First wait before a failed task starts again; doubles up to `RESTART_MAX`.
pub const RESTART_MIN: Duration = Duration::from_millis(500);
pub const RESTART_MAX: Duration = Duration::from_secs(60);
/// A task that ran this long before failing starts again after `RESTART_MIN`.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Entry {
    status: Option<TaskStatus>,
    /// Wakes the running instance to fail it (see `Registry::fail`).
    fault: Arc<Notify>,
}

/// What the supervisor knows of each task, shared with the status and metrics.
#[derive(Default)]
pub struct Registry {
    tasks: Mutex<BTreeMap<&'static str, Entry>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Entry>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self, name: &'static str) -> Arc<Notify> {
        let mut g = self.lock();
        let e = g.entry(name).or_default();
        let st = e.status.get_or_insert(TaskStatus { running: true, restarts: 0, last_failure: None });
        st.running = true;
        e.fault.clone()
    }

    fn ended(&self, name: &'static str, why: String) {
        let mut g = self.lock();
        if let Some(st) = g.entry(name).or_default().status.as_mut() {
            st.running = false;
            st.restarts += 1;
            st.last_failure = Some(why);
        }
    }

    /// How often `name` was restarted.
    pub fn restarts(&self, name: &str) -> Option<u64> {
        self.lock().get(name).and_then(|e| e.status.as_ref()).map(|s| s.restarts)
    }

    /// Makes the running instance of `name` panic, as a bug would: for tests of the supervisor and
    /// for checking a deployment's alerting. Returns false when no such task runs.
    pub fn fail(&self, name: &str) -> bool {
        match self.lock().get(name) {
            Some(e) if e.status.as_ref().is_some_and(|s| s.running) => {
                e.fault.notify_one();
                true
            }
            _ => false,
        }
    }
}

impl StatusSource for Registry {
    fn status(&self, status: &mut Status) {
        for (name, e) in self.lock().iter() {
            if let Some(st) = &e.status {
                status.tasks.insert(name.to_string(), st.clone());
            }
        }
    }

    fn metrics(&self, out: &mut Metrics) {
        let g = self.lock();
        let tasks: Vec<(&str, &TaskStatus)> = g.iter().filter_map(|(n, e)| Some((*n, e.status.as_ref()?))).collect();
        out.family("task_restarts_total", Kind::Counter, "Capability tasks restarted after they ended or panicked.");
        for (name, st) in &tasks {
            out.sample("task_restarts_total", &[("task", name)], st.restarts);
        }
        out.family("task_running", Kind::Gauge, "Whether a capability task runs now.");
        for (name, st) in &tasks {
            out.sample("task_running", &[("task", name)], st.running as u8);
        }
    }
}

/// Aborts the task when dropped (a supervisor aborted at shutdown takes its task along).
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The owner of every capability task.
pub struct Tasks {
    set: JoinSet<()>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    /// First and longest wait before a restart.
    restart: (Duration, Duration),
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".into();
    }
    let p = e.into_panic();
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("panicked: {}", msg.unwrap_or_else(|| "(no message)".into()))
}

impl Tasks {
    pub fn new(registry: Arc<Registry>, shutdown: CancellationToken) -> Tasks {
        Tasks { set: JoinSet::new(), registry, shutdown, restart: (RESTART_MIN, RESTART_MAX) }
    }

    /// Other restart waits than `RESTART_MIN`..`RESTART_MAX` (tests).
    pub fn restart_backoff(mut self, min: Duration, max: Duration) -> Tasks {
        self.restart = (min, max);
        self
    }

    /// Runs `make()` until shutdown: each time it returns or panics before then, it is logged,
    /// counted and made anew after a backoff. `make` builds the task from what it keeps.
    pub fn supervise<F, Fut>(&mut self, name: &'static str, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let registry = self.registry.clone();
        let shutdown = self.shutdown.clone();
        let (min, max) = self.restart;
        self.set.spawn(async move {
            let mut backoff = Backoff::new(min, max);
            loop {
                let fault = registry.started(name);
                let task = make();
                let began = Instant::now();
                let mut run = AbortOnDrop(tokio::spawn(async move {
                    tokio::select! {
                        _ = task => {}
                        _ = fault.notified() => panic!("failure injected into {name}"),
                    }
                }));
                let why = match (&mut run.0).await {
                    Ok(()) => "returned".to_string(),
                    Err(e) => panic_message(e),
                };
                if shutdown.is_cancelled() {
                    return;
                }
                if began.elapsed() >= HEALTHY_RUN {
                    backoff.reset();
                }
                let wait = backoff.next_delay();
                tracing::error!(task = name, "capability task {why}; restarting it in {wait:?}");
                registry.ended(name, why);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Waits for every task (they watch the shutdown token) up to `limit`, then aborts the rest.
    pub async fn drain(mut self, limit: Duration) {
        let drain = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, drain).await.is_err() {
            tracing::warn!("some tasks did not stop in time");
        }
        self.set.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_restarted_and_counted() {
        let registry = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let ms = Duration::from_millis;
        let mut tasks = Tasks::new(registry.clone(), shutdown.clone()).restart_backoff(ms(10), ms(40));
        let starts = Arc::new(AtomicU32::new(0));
        let s = starts.clone();
        tasks.supervise("flaky", move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => panic!("first run fails"),
                    1 => {} // returns at once
                    _ => std::future::pending().await,
                }
            }
        });
        tokio::time::sleep(ms(500)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert_eq!(registry.restarts("flaky"), Some(2));
        let mut st = crate::events::Bus::new().report();
        registry.status(&mut st);
        assert_eq!(st.tasks["flaky"], TaskStatus { running: true, restarts: 2, last_failure: Some("returned".into()) });
        assert!(registry.fail("flaky"));
        tokio::time::sleep(ms(500)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 4);
        let mut m = Metrics::new();
        registry.metrics(&mut m);
        let out = m.finish();
        assert!(out.contains("doorbell_bridge_task_restarts_total{task=\"flaky\"} 3"), "{out}");
        assert!(!registry.fail("nothing"));
        shutdown.cancel();
        tasks.drain(Duration::from_secs(1)).await;
    }
}
