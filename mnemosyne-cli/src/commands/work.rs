//! `work`: submit, claim, heartbeat, complete, fail, cancel, review, list,
//! show, stats. Each command takes ownership of the queue (so two processes
//! never hand out the same item), opens it, runs, and shuts the queue down.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use mnemosyne_core::{WorkItem, WorkState};
use mnemosyne_orchestration::{
    Completion, NewWorkItem, QueueDatabase, QueueOwnership, Review, Supervisor, WorkQueue,
};
use mnemosyne_storage::Location;
use serde::Serialize;

use super::store_session::with_store;
use crate::config::Settings;
use crate::output::{self, Output};
use crate::work_cli::WorkCommand;

/// What `work claim` prints with `--json`.
#[derive(Debug, Serialize)]
struct Claimed {
    item: Option<WorkItem>,
}

/// What `work list` prints with `--json`.
#[derive(Debug, Serialize)]
struct ItemList {
    items: Vec<WorkItem>,
}

pub async fn run(command: WorkCommand, settings: &Settings, out: Output) -> Result<()> {
    match command {
        WorkCommand::Submit(args) => {
            let new = NewWorkItem {
                id: None,
                description: args.description,
                phase: args.phase,
                priority: args.priority,
                dependencies: args.depends_on,
                requirements: args.requirements,
                suggested_tests: args.suggested_tests,
                review_required: args.review,
            };
            let item = with_queue(settings, async |queue| Ok(queue.submit(new).await?)).await?;
            out.emit(&item, |w| writeln!(w, "{}", item.id))
        }
        WorkCommand::Claim(args) => {
            let item =
                with_queue(settings, async |queue| Ok(queue.claim(&args.agent).await?)).await?;
            let claimed = Claimed { item };
            out.emit(&claimed, |w| match &claimed.item {
                Some(item) => write_item(w, item),
                None => writeln!(w, "no work item is ready"),
            })
        }
        WorkCommand::Heartbeat(args) => {
            let item = with_queue(settings, async |queue| {
                Ok(queue.heartbeat(args.id, args.agent.as_deref()).await?)
            })
            .await?;
            out.emit(&item, |w| {
                writeln!(w, "renewed {} until {}", item.id, lease_end(&item))
            })
        }
        WorkCommand::Complete(args) => {
            let completion = Completion {
                agent: args.agent,
                evidence: args.evidence,
                met: args.met,
            };
            let item = with_queue(settings, async |queue| {
                Ok(queue.complete(args.id, completion).await?)
            })
            .await?;
            out.emit(&item, |w| write_outcome(w, "completed", &item))
        }
        WorkCommand::Fail(args) => {
            let item = with_queue(settings, async |queue| {
                Ok(queue
                    .fail(args.id, args.agent.as_deref(), &args.reason)
                    .await?)
            })
            .await?;
            out.emit(&item, |w| write_outcome(w, "failed", &item))
        }
        WorkCommand::Cancel(args) => {
            let item = with_queue(settings, async |queue| Ok(queue.cancel(args.id).await?)).await?;
            out.emit(&item, |w| write_outcome(w, "cancelled", &item))
        }
        WorkCommand::Review(args) => {
            let review = Review {
                agent: args.agent,
                approve: args.approve,
                feedback: args.feedback,
                suggested_tests: args.suggested_tests,
            };
            let verdict = if args.approve { "approved" } else { "rejected" };
            let item = with_queue(settings, async |queue| {
                Ok(queue.review(args.id, review).await?)
            })
            .await?;
            out.emit(&item, |w| write_outcome(w, verdict, &item))
        }
        WorkCommand::List(args) => {
            let items = with_queue(settings, async |queue| {
                Ok(queue
                    .list(args.state, args.phase, args.limit, args.offset)
                    .await?)
            })
            .await?;
            let list = ItemList { items };
            let width = output::width();
            out.emit(&list, |w| {
                for item in &list.items {
                    let head = format!(
                        "{}  {:<9}  {:<9}  prio {:>3}  ",
                        item.id,
                        item.state.as_str(),
                        item.phase.as_str(),
                        item.priority
                    );
                    let room = width.saturating_sub(head.chars().count()).max(20);
                    writeln!(w, "{head}{}", output::preview(&item.description, room))?;
                }
                let n = list.items.len();
                if n == 0 {
                    writeln!(w, "no work items")
                } else if n as u64 == u64::from(args.limit) {
                    writeln!(
                        w,
                        "{n} items shown; there may be more: --offset {}",
                        args.offset + n as u64
                    )
                } else {
                    writeln!(w, "{n} item{} shown", if n == 1 { "" } else { "s" })
                }
            })
        }
        WorkCommand::Show(args) => {
            let item = with_queue(settings, async |queue| Ok(queue.get(args.id).await?)).await?;
            out.emit(&item, |w| write_item(w, &item))
        }
        WorkCommand::Stats => {
            let stats = with_queue(settings, async |queue| Ok(queue.stats().await?)).await?;
            out.emit(&stats, |w| {
                let q = &stats.queue;
                writeln!(
                    w,
                    "active    {} of {} (work_items_max)",
                    q.active, q.capacity
                )?;
                writeln!(w, "ready     {}", q.ready)?;
                writeln!(w, "claimed   {}", q.claimed)?;
                writeln!(w, "waiting   {}", q.waiting)?;
                let stored: Vec<String> = stats
                    .stored
                    .iter()
                    .map(|(state, count)| format!("{state} {count}"))
                    .collect();
                writeln!(w, "stored    {}", stored.join(", "))
            })
        }
    }
}

/// Opens the queue on the store once this process owns it (waiting up to
/// `work_owner_wait_timeout_ms` for another owner to let go), runs `work`,
/// and shuts the queue's tasks down whatever happened.
async fn with_queue<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&WorkQueue) -> Result<T>,
) -> Result<T> {
    with_store(settings, async |store| {
        let wait = Duration::from_millis(settings.limits.work_owner_wait_timeout_ms);
        let _owner = QueueOwnership::acquire(queue_database(settings), wait)
            .await?
            .into_owner()?;
        let supervisor = Supervisor::from_limits(&settings.limits);
        let result = match WorkQueue::open(store.storage().clone(), &settings.limits, &supervisor)
            .await
            .context("cannot open the work queue")
        {
            Ok(queue) => work(&queue).await,
            Err(error) => Err(error),
        };
        let report = supervisor.shutdown().await;
        if !report.is_clean() {
            tracing::warn!(?report, "work queue tasks did not stop in time");
        }
        result
    })
    .await
}

/// The configured database, as queue ownership sees it.
pub(super) fn queue_database(settings: &Settings) -> QueueDatabase<'_> {
    match &settings.location {
        Location::File(path) => QueueDatabase::File(path),
        Location::Remote { .. } => QueueDatabase::Remote,
    }
}

fn lease_end(item: &WorkItem) -> String {
    item.lease_expires_at
        .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339())
}

/// One line saying what a transition did and where the item is now.
fn write_outcome(w: &mut dyn Write, verb: &str, item: &WorkItem) -> io::Result<()> {
    match item.state {
        WorkState::Pending => {
            writeln!(w, "{verb} {}: now pending in phase {}", item.id, item.phase)
        }
        state => writeln!(w, "{verb} {}: now {state}", item.id),
    }
}

/// Every field of a work item for people.
fn write_item(w: &mut dyn Write, item: &WorkItem) -> io::Result<()> {
    let list = |ids: Vec<String>| {
        if ids.is_empty() {
            "-".to_owned()
        } else {
            ids.join(", ")
        }
    };
    writeln!(w, "id            {}", item.id)?;
    writeln!(w, "description   {}", item.description)?;
    writeln!(w, "phase         {}", item.phase)?;
    match &item.claimant {
        Some(agent) => writeln!(
            w,
            "state         {} by {agent} until {}",
            item.state,
            lease_end(item)
        )?,
        None => writeln!(w, "state         {}", item.state)?,
    }
    writeln!(w, "priority      {}", item.priority)?;
    writeln!(w, "attempts      {}", item.attempts)?;
    writeln!(
        w,
        "review        {}",
        if item.review_required {
            "required"
        } else {
            "no"
        }
    )?;
    let dependencies = item.dependencies.iter().map(ToString::to_string).collect();
    writeln!(w, "depends on    {}", list(dependencies))?;
    let evidence = item.evidence.iter().map(ToString::to_string).collect();
    writeln!(w, "evidence      {}", list(evidence))?;
    for (index, requirement) in item.requirements.iter().enumerate() {
        let mark = if requirement.met { "x" } else { " " };
        writeln!(w, "requirement   {index} [{mark}] {}", requirement.text)?;
    }
    for feedback in &item.review_feedback {
        writeln!(w, "feedback      {feedback}")?;
    }
    for test in &item.suggested_tests {
        writeln!(w, "suggested     {test}")?;
    }
    if let Some(reason) = &item.failure_reason {
        writeln!(w, "reason        {reason}")?;
    }
    writeln!(w, "created       {}", item.created_at.to_rfc3339())?;
    writeln!(w, "updated       {}", item.updated_at.to_rfc3339())
}
