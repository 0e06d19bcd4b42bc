//! The `work` subcommands' command line (clap derive).

use clap::{ArgGroup, Args, Subcommand};
use mnemosyne_core::{MemoryId, Phase, WorkItemId, WorkState};

/// `work`: the agents' shared work queue.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// What to do with the queue.
    #[command(subcommand)]
    pub command: WorkCommand,
}

/// The `work` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkCommand {
    /// Add a work item; prints its id.
    Submit(SubmitArgs),
    /// Claim the ready item with the highest priority, under a lease of work_lease_s.
    Claim(ClaimArgs),
    /// Renew the lease of a claimed item.
    Heartbeat(HeartbeatArgs),
    /// Finish the phase of a claimed item (spec → plan → implement → review/done).
    Complete(CompleteArgs),
    /// Give up on an item; items that depend on it fail too.
    Fail(FailArgs),
    /// Withdraw an item; items that depend on it are cancelled too.
    Cancel(ItemArgs),
    /// Approve (done) or reject (back to implement) an item in review.
    Review(ReviewArgs),
    /// List stored items, newest first.
    List(WorkListArgs),
    /// Print one item in full.
    Show(ItemArgs),
    /// Active, ready, claimed and stored counts.
    Stats,
}

/// `work submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What to do.
    pub description: String,
    /// Phase it starts in: spec, plan, implement or review.
    #[arg(long, short = 'p', default_value = "implement")]
    pub phase: Phase,
    /// Higher is claimed first (may be negative).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// An item that must be done first (repeat for more).
    #[arg(long = "depends-on", value_name = "ID")]
    pub depends_on: Vec<WorkItemId>,
    /// Something it must satisfy (repeat for more).
    #[arg(long = "requirement", value_name = "TEXT")]
    pub requirements: Vec<String>,
    /// A test it should get (repeat for more).
    #[arg(long = "suggest-test", value_name = "TEXT")]
    pub suggested_tests: Vec<String>,
    /// Send it to review after implement instead of straight to done.
    #[arg(long)]
    pub review: bool,
}

/// `work claim`.
#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// Who claims it.
    #[arg(long, short = 'a')]
    pub agent: String,
}

/// `work heartbeat`.
#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    /// The claimed item.
    pub id: WorkItemId,
    /// The claimant (checked when given).
    #[arg(long, short = 'a')]
    pub agent: Option<String>,
}

/// `work complete`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The claimed item.
    pub id: WorkItemId,
    /// A stored memory showing the work (repeat for more).
    #[arg(long, value_name = "MEMORY_ID")]
    pub evidence: Vec<MemoryId>,
    /// Index (from 0) of a requirement now met (repeat for more).
    #[arg(long, value_name = "INDEX")]
    pub met: Vec<usize>,
    /// The claimant (checked when given).
    #[arg(long, short = 'a')]
    pub agent: Option<String>,
}

/// `work fail`.
#[derive(Debug, Args)]
pub struct FailArgs {
    /// The item.
    pub id: WorkItemId,
    /// Why it failed.
    #[arg(long)]
    pub reason: String,
    /// The claimant (checked when given).
    #[arg(long, short = 'a')]
    pub agent: Option<String>,
}

/// `work review`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("verdict").required(true).args(["approve", "reject"])))]
pub struct ReviewArgs {
    /// The item in review.
    pub id: WorkItemId,
    /// It is done.
    #[arg(long)]
    pub approve: bool,
    /// It goes back to implement (needs --feedback).
    #[arg(long)]
    pub reject: bool,
    /// What the reviewer says.
    #[arg(long)]
    pub feedback: Option<String>,
    /// A test the reviewer asks for (repeat for more).
    #[arg(long = "suggest-test", value_name = "TEXT")]
    pub suggested_tests: Vec<String>,
    /// The reviewer (checked against the claimant when given).
    #[arg(long, short = 'a')]
    pub agent: Option<String>,
}

/// `work show`, `work cancel`.
#[derive(Debug, Args)]
pub struct ItemArgs {
    /// The item.
    pub id: WorkItemId,
}

/// `work list`.
#[derive(Debug, Args)]
pub struct WorkListArgs {
    /// Only items in this state: pending, claimed, done, failed or cancelled.
    #[arg(long, short = 's')]
    pub state: Option<WorkState>,
    /// Only items in this phase.
    #[arg(long, short = 'p')]
    pub phase: Option<Phase>,
    /// Rows to print (at most list_page_rows_max).
    #[arg(long, short = 'l', default_value_t = 20)]
    pub limit: u32,
    /// Rows to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}
