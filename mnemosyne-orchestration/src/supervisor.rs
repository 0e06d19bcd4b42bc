//! The [`Supervisor`]: named, counted background tasks with a bounded shutdown.
//!
//! Built on tokio-util's [`TaskTracker`] (waiting for every task to end) and
//! [`CancellationToken`] (telling them to end). Each task also sits in a
//! registry, keyed by [`TaskId`], holding its name and its [`AbortHandle`]:
//! that is what lets shutdown abort the stragglers and say which they were.
//! A task removes its own entry when it ends (returns, panics or is aborted),
//! so the registry only ever holds live tasks.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use mnemosyne_core::Limits;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long [`Supervisor::shutdown`] waits, after aborting the tasks still
/// running at its deadline, for the aborts to take effect. An abort lands at
/// the task's next `.await`; a task stuck in blocking code never gets there
/// and is reported in [`ShutdownReport::still_running`].
pub const ABORT_GRACE_MS: u64 = 1_000;

/// Why a task was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// [`Supervisor::shutdown`] has started (or the supervisor is being
    /// dropped): no new task is accepted.
    #[error("supervisor is shutting down, task {task} not started")]
    ShuttingDown {
        /// Name of the refused task.
        task: String,
    },
    /// `spawn` was called outside a tokio runtime.
    #[error("no tokio runtime to run task {task}")]
    NoRuntime {
        /// Name of the refused task.
        task: String,
    },
}

/// Identifies one task of one supervisor (never reused by that supervisor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// What [`Supervisor::shutdown`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks that ended by themselves before the shutdown timeout.
    pub stopped_in_time: usize,
    /// Names of the tasks still running at the deadline, which were aborted
    /// (sorted; a name appears once per task).
    pub aborted: Vec<String>,
    /// Names of the aborted tasks that had still not ended [`ABORT_GRACE_MS`]
    /// after the abort (stuck in blocking code), sorted. Empty normally.
    pub still_running: Vec<String>,
}

impl ShutdownReport {
    /// Every task stopped by itself in time: nothing aborted.
    pub fn is_clean(&self) -> bool {
        self.aborted.is_empty() && self.still_running.is_empty()
    }
}

/// Owner of every background task: the only way a Mnemosyne crate starts one.
///
/// Every task is named and counted ([`alive`](Self::alive),
/// [`names`](Self::names)), receives a [`CancellationToken`] that fires on
/// shutdown, and is stopped by [`shutdown`](Self::shutdown) within the
/// shutdown timeout (then aborted and reported). Dropping the supervisor
/// aborts whatever is still running, without waiting.
///
/// Not `Clone`: share it as `Arc<Supervisor>`; its `Drop` is the end of
/// every task it owns.
pub struct Supervisor {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    root: CancellationToken,
    shutdown_timeout: Duration,
}

/// State shared with the running tasks (which deregister themselves).
struct Shared {
    registry: Mutex<Registry>,
    spawned_total: AtomicU64,
    panicked_total: AtomicU64,
}

struct Registry {
    tasks: HashMap<TaskId, Entry>,
    next_id: u64,
    shutting_down: bool,
}

struct Entry {
    name: Cow<'static, str>,
    /// `None` between registration and the spawn returning, and once taken
    /// to be aborted.
    abort: Option<AbortHandle>,
    /// Shutdown or `Drop` asked for this task to be aborted; `spawn` honours
    /// it if the request came before the handle was stored.
    abort_requested: bool,
}

impl Shared {
    /// The registry lock. It is never held while user code runs (task bodies,
    /// closures, drops of user values), so a poisoned lock can only come from
    /// a panic inside this module's own bookkeeping; its data stays usable.
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks every live task for abort and takes the handles to abort, so
    /// the caller aborts them with the lock released.
    fn take_for_abort(&self) -> (Vec<String>, Vec<AbortHandle>) {
        let mut registry = self.lock();
        registry.shutting_down = true;
        let mut names = Vec::with_capacity(registry.tasks.len());
        let mut handles = Vec::with_capacity(registry.tasks.len());
        for entry in registry.tasks.values_mut() {
            entry.abort_requested = true;
            names.push(entry.name.to_string());
            handles.extend(entry.abort.take());
        }
        names.sort_unstable();
        (names, handles)
    }
}

impl Supervisor {
    /// A supervisor whose [`shutdown`](Self::shutdown) gives tasks
    /// `shutdown_timeout` to stop (callers pass
    /// `Duration::from_secs(limits.shutdown_timeout_s)`, or use
    /// [`from_limits`](Self::from_limits)).
    pub fn new(shutdown_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry {
                    tasks: HashMap::new(),
                    next_id: 0,
                    shutting_down: false,
                }),
                spawned_total: AtomicU64::new(0),
                panicked_total: AtomicU64::new(0),
            }),
            tracker: TaskTracker::new(),
            root: CancellationToken::new(),
            shutdown_timeout,
        }
    }

    /// A supervisor with `limits.shutdown_timeout_s`.
    pub fn from_limits(limits: &Limits) -> Self {
        Self::new(Duration::from_secs(limits.shutdown_timeout_s))
    }

    /// Starts the background task `task(token)` on the current tokio runtime.
    ///
    /// `token` is a child of the supervisor's token: it is cancelled when
    /// shutdown starts, and the task should then finish promptly. A task that
    /// does not is aborted at the shutdown deadline. A task that panics is
    /// logged (tracing error with its name) and removed; the supervisor and
    /// the other tasks carry on.
    ///
    /// `task` is not called when the task is refused: after shutdown started
    /// ([`SupervisorError::ShuttingDown`]) or outside a runtime
    /// ([`SupervisorError::NoRuntime`]).
    pub fn spawn<F, Fut>(
        &self,
        name: impl Into<Cow<'static, str>>,
        task: F,
    ) -> Result<TaskId, SupervisorError>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        if self.shared.lock().shutting_down {
            return Err(SupervisorError::ShuttingDown {
                task: name.into_owned(),
            });
        }
        let Ok(runtime) = Handle::try_current() else {
            return Err(SupervisorError::NoRuntime {
                task: name.into_owned(),
            });
        };
        // User code: built with the lock released.
        let body = task(self.root.child_token());

        // Register and start tracking in one step with the shutdown flag, so
        // a shutdown either refuses this task or waits for it. The future is
        // not spawned under the lock: a runtime that is shutting down drops
        // it on the spot, and its deregistration takes the lock.
        let (id, tracked) = {
            let mut registry = self.shared.lock();
            if registry.shutting_down {
                drop(registry);
                drop(body);
                return Err(SupervisorError::ShuttingDown {
                    task: name.into_owned(),
                });
            }
            let id = TaskId(registry.next_id);
            registry.next_id += 1;
            registry.tasks.insert(
                id,
                Entry {
                    name: name.clone(),
                    abort: None,
                    abort_requested: false,
                },
            );
            let run = run_task(Arc::clone(&self.shared), id, name.clone(), body);
            (id, self.tracker.track_future(run))
        };
        let join = runtime.spawn(tracked);
        self.shared.spawned_total.fetch_add(1, Ordering::Relaxed);

        let mut registry = self.shared.lock();
        // Absent if the task already ended; then there is nothing to keep.
        if let Some(entry) = registry.tasks.get_mut(&id) {
            if entry.abort_requested {
                join.abort();
            } else {
                entry.abort = Some(join.abort_handle());
            }
        }
        drop(registry);
        tracing::debug!(task = %name, id = %id, "background task started");
        Ok(id)
    }

    /// Number of live tasks (spawned and not yet ended).
    pub fn alive(&self) -> usize {
        self.shared.lock().tasks.len()
    }

    /// Names of the live tasks, sorted (a name appears once per task).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .lock()
            .tasks
            .values()
            .map(|entry| entry.name.to_string())
            .collect();
        names.sort_unstable();
        names
    }

    /// Tasks started since this supervisor was created.
    pub fn spawned_total(&self) -> u64 {
        self.shared.spawned_total.load(Ordering::Relaxed)
    }

    /// Tasks that ended with a panic since this supervisor was created.
    pub fn panicked_total(&self) -> u64 {
        self.shared.panicked_total.load(Ordering::Relaxed)
    }

    /// Whether shutdown has started (new tasks are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.lock().shutting_down
    }

    /// The time [`shutdown`](Self::shutdown) gives tasks to stop.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// A token cancelled when shutdown starts, for code that wants to observe
    /// it. It is a child token: cancelling it affects only its holder, never
    /// the supervisor's tasks.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.root.child_token()
    }

    /// Stops every task: refuses new ones, cancels their tokens, waits up to
    /// the shutdown timeout for them to end, then aborts the rest and waits
    /// up to [`ABORT_GRACE_MS`] for the aborts to land.
    ///
    /// Idempotent: a later call finds no task left and returns an empty
    /// report at once (unless a task could not be stopped at all, which it
    /// waits for again, bounded the same way). If this future is dropped
    /// before it completes, the tasks stay cancelled and dropping the
    /// supervisor aborts them.
    pub async fn shutdown(&self) -> ShutdownReport {
        let live_at_start = {
            let mut registry = self.shared.lock();
            registry.shutting_down = true;
            registry.tasks.len()
        };
        self.root.cancel();
        self.tracker.close();

        let in_time = tokio::time::timeout(self.shutdown_timeout, self.tracker.wait())
            .await
            .is_ok();
        if in_time {
            if live_at_start > 0 {
                tracing::info!(stopped = live_at_start, "background tasks stopped");
            }
            return ShutdownReport {
                stopped_in_time: live_at_start,
                ..ShutdownReport::default()
            };
        }

        // No task is added after the flag, so the ones left are a subset of
        // those alive at the start.
        let (aborted, handles) = self.shared.take_for_abort();
        for handle in &handles {
            handle.abort();
        }
        drop(handles);
        for name in &aborted {
            tracing::warn!(
                task = %name,
                timeout_ms = self.shutdown_timeout.as_millis(),
                "background task ignored cancellation until the shutdown timeout: aborted"
            );
        }
        let grace = Duration::from_millis(ABORT_GRACE_MS);
        let still_running = if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            Vec::new()
        } else {
            let names = self.names();
            for name in &names {
                tracing::error!(
                    task = %name,
                    grace_ms = ABORT_GRACE_MS,
                    "background task still running after abort (blocking code?)"
                );
            }
            names
        };
        ShutdownReport {
            stopped_in_time: live_at_start.saturating_sub(aborted.len()),
            aborted,
            still_running,
        }
    }
}

impl Drop for Supervisor {
    /// Cancels and aborts every live task, without waiting for them.
    fn drop(&mut self) {
        let (names, handles) = self.shared.take_for_abort();
        self.root.cancel();
        self.tracker.close();
        if !handles.is_empty() {
            tracing::warn!(
                tasks = handles.len(),
                "supervisor dropped with live background tasks: aborting them"
            );
            for name in &names {
                tracing::debug!(task = %name, "background task aborted by drop");
            }
        }
        for handle in &handles {
            handle.abort();
        }
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("alive", &self.alive())
            .field("spawned_total", &self.spawned_total())
            .field("panicked_total", &self.panicked_total())
            .field("shutting_down", &self.is_shutting_down())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

/// The body of every supervised task: runs `body`, turns a panic into a log
/// line, and deregisters on every way out (return, panic, abort).
async fn run_task<Fut>(shared: Arc<Shared>, id: TaskId, name: Cow<'static, str>, body: Fut)
where
    Fut: Future<Output = ()>,
{
    let _deregister = Deregister {
        shared: Arc::clone(&shared),
        id,
    };
    match CatchUnwind(Box::pin(body)).await {
        Ok(()) => tracing::debug!(task = %name, id = %id, "background task ended"),
        Err(payload) => {
            shared.panicked_total.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                task = %name,
                id = %id,
                panic = panic_message(payload.as_ref()),
                "background task panicked"
            );
        }
    }
}

/// Removes a task's registry entry when the task's future is dropped.
struct Deregister {
    shared: Arc<Shared>,
    id: TaskId,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        let removed = self.shared.lock().tasks.remove(&self.id);
        drop(removed);
    }
}

/// Polls a future, catching a panic of its `poll` as `Err(payload)`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let body = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| body.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests;
