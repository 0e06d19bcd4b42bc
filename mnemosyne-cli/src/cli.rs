//! The command line, as clap derive types. User values are parsed with the
//! core types' `FromStr`, so a bad value is reported in the core's words.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mnemosyne_core::{
    Importance, Link, LinkType, ListSort, MemoryId, MemoryType, Namespace, OnConflict,
};

/// Local-first memory server for AI coding agents.
#[derive(Debug, Parser)]
#[command(
    name = "mnemosyne",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Options every subcommand accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Database: a file path, or a libsql:// or https:// URL (libsql builds;
    /// the token comes from MNEMOSYNE_AUTH_TOKEN) [default: the platform data
    /// dir, e.g. ~/.local/share/mnemosyne/mnemosyne.db]
    #[arg(long, global = true, env = "MNEMOSYNE_DB", value_name = "PATH|URL")]
    pub db: Option<String>,
    /// Config file (TOML: `db = "..."` and a `[limits]` table) [default:
    /// config.toml in the platform config dir, if it exists]
    #[arg(long, global = true, env = "MNEMOSYNE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print stable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More logs on stderr: -v info, -vv debug, -vvv trace (RUST_LOG, when
    /// set, takes over).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a memory; prints its id.
    Remember(RememberArgs),
    /// Search memories by keywords, best first.
    Recall(RecallArgs),
    /// Print one memory (archived ones too).
    Get(GetArgs),
    /// Change some fields of a memory.
    Update(UpdateArgs),
    /// Archive a memory (hidden from recall and list), or delete it with --hard.
    Forget(ForgetArgs),
    /// Link one memory to another.
    Link(LinkArgs),
    /// List memories, most recent first.
    List(ListArgs),
    /// Print one memory with its linked neighbourhood (typed, directed links, bounded hops).
    Context(ContextArgs),
    /// Count memories.
    Count(CountArgs),
    /// Write every memory as JSON lines (one memory with its links per line).
    Export(ExportArgs),
    /// Read memories from a JSON lines file written by export.
    Import(ImportArgs),
    /// Re-embed every memory whose vector is missing or was made by another embedder.
    Reindex,
    /// Print the effective configuration: database and every limit.
    Config,
    /// The agents' shared work queue: submit, claim, complete, review.
    Work(crate::work_cli::WorkArgs),
    /// Gauges of this process on the database: memory, fds, pool, stored items.
    Diagnostics(DiagnosticsArgs),
    /// Check the database, limits, disk, fd limit and embedder, and say what to fix.
    Doctor,
    /// Context documents that several agents edit at once (CRDT).
    #[command(subcommand)]
    Doc(DocCommand),
    /// Serve agents: MCP over stdio, or the HTTP API with SSE events.
    #[command(subcommand)]
    Serve(ServeCommand),
    /// A Claude Code hook: read the event's JSON on stdin, print the context
    /// to add (SessionStart, UserPromptSubmit). Always exits 0; problems go
    /// to stderr as one line.
    Hook(HookArgs),
}

/// `hook`.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// SessionStart or UserPromptSubmit [default: the input's hook_event_name].
    /// Any other event prints nothing.
    #[arg(value_name = "EVENT")]
    pub event: Option<String>,
    /// The project namespace [default: detected from the input's cwd, as
    /// `serve mcp` does from its working directory]. Checked by the hook, not
    /// the command line: a bad one is a line on stderr and exit 0, as every
    /// hook failure (exit 2 would erase the user's prompt).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// `diagnostics`.
#[derive(Debug, Args)]
pub struct DiagnosticsArgs {
    /// Refresh until Ctrl-C.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2)]
    pub interval_s: u64,
}

/// `doc` subcommands.
#[derive(Debug, Subcommand)]
pub enum DocCommand {
    /// List documents by name.
    List(DocListArgs),
    /// Print a document's text (with --json: its metadata, heads and text).
    Show(DocNameArgs),
    /// Replace a document's text with stdin, applied as a diff; creates it if missing.
    Write(DocWriteArgs),
    /// Edit a document in $VISUAL or $EDITOR; the change is applied as a diff when it closes.
    Edit(DocEditArgs),
    /// Who changed a document, when and how much (newest first), and undo depths.
    History(DocHistoryArgs),
    /// Drop a document's history now: rebuilt from its text, epoch bumped.
    Compact(DocActorArgs),
    /// Undo the actor's latest change to a document.
    Undo(DocActorArgs),
    /// Redo the actor's latest undo.
    Redo(DocActorArgs),
    /// Delete a document with its history.
    Delete(DocNameArgs),
}

/// The agent a document change is attributed to.
#[derive(Debug, Args)]
pub struct ActorArg {
    /// Who makes the change (an agent name); undo and redo are per actor.
    #[arg(long, env = "MNEMOSYNE_ACTOR", default_value = "cli")]
    pub actor: String,
}

/// `doc list`.
#[derive(Debug, Args)]
pub struct DocListArgs {
    /// Only documents in this exact namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<Namespace>,
    /// Documents per page [maximum: list_page_rows_max].
    #[arg(long, short = 'l', default_value = "50")]
    pub limit: u32,
    /// Documents to skip.
    #[arg(long, default_value = "0")]
    pub offset: u64,
}

/// `doc show`, `doc delete`.
#[derive(Debug, Args)]
pub struct DocNameArgs {
    /// Document name.
    pub name: String,
}

/// `doc write`.
#[derive(Debug, Args)]
pub struct DocWriteArgs {
    /// Document name.
    pub name: String,
    #[command(flatten)]
    pub actor: ActorArg,
    /// Refuse the write if the document was compacted since this epoch was read.
    #[arg(long)]
    pub epoch: Option<u64>,
    /// Namespace of a document created by this write.
    #[arg(long, short = 'n', default_value = "global")]
    pub namespace: Namespace,
    /// Title of a document created by this write [default: its name].
    #[arg(long)]
    pub title: Option<String>,
}

/// `doc edit`.
#[derive(Debug, Args)]
pub struct DocEditArgs {
    /// Document name (created when missing and the edited text is not empty).
    pub name: String,
    #[command(flatten)]
    pub actor: ActorArg,
    /// Namespace of a document created by this edit.
    #[arg(long, short = 'n', default_value = "global")]
    pub namespace: Namespace,
}

/// `doc history`.
#[derive(Debug, Args)]
pub struct DocHistoryArgs {
    /// Document name.
    pub name: String,
    /// Records to print [maximum: list_page_rows_max].
    #[arg(long, short = 'l', default_value = "20")]
    pub limit: u32,
}

/// `doc compact`, `doc undo`, `doc redo`.
#[derive(Debug, Args)]
pub struct DocActorArgs {
    /// Document name.
    pub name: String,
    #[command(flatten)]
    pub actor: ActorArg,
}

/// `serve`.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// MCP over stdin/stdout (for Claude Code and other MCP clients); stops
    /// when stdin closes or on SIGINT/SIGTERM.
    Mcp(ServeMcpArgs),
    /// The HTTP API (/v1/memories, /v1/recall, /v1/events, /health,
    /// /metrics); stops on SIGINT/SIGTERM.
    Http(ServeHttpArgs),
}

/// `serve mcp`.
#[derive(Debug, Args)]
pub struct ServeMcpArgs {
    /// Where `remember` goes and what `recall` searches (with the namespaces
    /// it sees) when a call names no namespace [default: the project of the
    /// working directory: the `namespace` of a .mnemosyne.toml here or
    /// above, else project:NAME of the git repository's root directory,
    /// else global; `mnemosyne config` shows it].
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<Namespace>,
}

/// `serve http`.
#[derive(Debug, Args)]
pub struct ServeHttpArgs {
    /// Address to listen on [default: `bind` of the config file's [server]
    /// table, else 127.0.0.1:7077]. Any non-loopback address needs a token
    /// (MNEMOSYNE_TOKEN or `token` in [server]).
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<std::net::SocketAddr>,
    /// Also answer requests naming this host (a reverse proxy's name;
    /// NAME for any port, NAME:PORT for one); repeatable, added to
    /// `http_allowed_hosts` of [server]. Loopback names and the bound
    /// address are always answered; any other Host gets 421.
    #[arg(long = "allowed-host", value_name = "NAME[:PORT]")]
    pub allowed_hosts: Vec<String>,
    /// Let pages of this origin (https://app.example) call the API, with
    /// CORS headers; repeatable, added to `http_allowed_origins` of
    /// [server]. Any other foreign Origin gets 403.
    #[arg(long = "allowed-origin", value_name = "SCHEME://HOST[:PORT]")]
    pub allowed_origins: Vec<String>,
}

/// `remember`.
#[derive(Debug, Args)]
pub struct RememberArgs {
    /// The text to remember, or `-` to read it from stdin.
    pub content: String,
    /// Namespace: global, project:NAME or session:PROJECT/ID.
    #[arg(long, short = 'n', default_value = "global")]
    pub namespace: Namespace,
    /// How much it matters, 1 to 10.
    #[arg(long, short = 'i', default_value = "5")]
    pub importance: Importance,
    /// Kind: note, decision, fact, pattern, bugfix, preference or context.
    #[arg(
        long = "type",
        short = 't',
        default_value = "note",
        value_name = "TYPE"
    )]
    pub memory_type: MemoryType,
    /// A tag (repeat, or separate with commas).
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// A short form of the content.
    #[arg(long)]
    pub summary: Option<String>,
    /// Link to an existing memory, optionally typed (default relates_to); repeatable.
    #[arg(long = "link", value_name = "ID[:TYPE]", value_parser = parse_link)]
    pub links: Vec<Link>,
}

/// `recall`.
#[derive(Debug, Args)]
pub struct RecallArgs {
    /// Words to search for.
    pub query: String,
    /// Search this namespace and the ones it sees (a session sees its project and global).
    #[arg(long, short = 'n')]
    pub namespace: Option<Namespace>,
    /// Results wanted [default and maximum: recall_results_max].
    #[arg(long, short = 'l')]
    pub limit: Option<u32>,
    /// Only memories carrying every one of these tags.
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Also search archived memories.
    #[arg(long)]
    pub include_archived: bool,
    /// Signals to use: hybrid (keyword + vector + links), keyword or vector.
    #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
    pub mode: Mode,
    /// Only memories of at least this importance, 1 to 10 (linked ones too).
    #[arg(long, value_name = "N")]
    pub min_importance: Option<Importance>,
}

/// `recall --mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Keyword (BM25) and vector candidates fused, plus linked memories.
    Hybrid,
    /// Keyword search only.
    Keyword,
    /// Vector similarity only.
    Vector,
}

impl From<Mode> for mnemosyne_storage::RecallMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Hybrid => Self::Hybrid,
            Mode::Keyword => Self::Keyword,
            Mode::Vector => Self::Vector,
        }
    }
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Memory id.
    pub id: MemoryId,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Memory id.
    pub id: MemoryId,
    /// New content, or `-` to read it from stdin.
    #[arg(long)]
    pub content: Option<String>,
    /// New summary.
    #[arg(long, conflicts_with = "clear_summary")]
    pub summary: Option<String>,
    /// Remove the summary.
    #[arg(long)]
    pub clear_summary: bool,
    /// New importance, 1 to 10.
    #[arg(long, short = 'i')]
    pub importance: Option<Importance>,
    /// New kind.
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub memory_type: Option<MemoryType>,
    /// Move to this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<Namespace>,
    /// Replace every tag with these (repeat, or separate with commas).
    #[arg(
        long = "tag",
        value_name = "TAG",
        value_delimiter = ',',
        conflicts_with = "clear_tags"
    )]
    pub tags: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub clear_tags: bool,
    /// Bring an archived memory back.
    #[arg(long)]
    pub restore: bool,
}

/// `forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Memory id.
    pub id: MemoryId,
    /// Delete the memory and its links instead of archiving it.
    #[arg(long)]
    pub hard: bool,
}

/// `link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The memory the link starts from.
    pub from: MemoryId,
    /// The memory it points to.
    pub to: MemoryId,
    /// Relation: relates_to, depends_on, supersedes, contradicts, derived_from, fixes or part_of.
    #[arg(
        long = "type",
        short = 't',
        default_value = "relates_to",
        value_name = "TYPE"
    )]
    pub link_type: LinkType,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this exact namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<Namespace>,
    /// Rows to print (at most list_page_rows_max).
    #[arg(long, short = 'l', default_value_t = 20)]
    pub limit: u32,
    /// Rows to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Order.
    #[arg(long, value_enum, default_value_t = SortArg::Recent)]
    pub sort: SortArg,
    /// Only memories carrying every one of these tags.
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Include archived memories.
    #[arg(long)]
    pub include_archived: bool,
    /// Only memories of at least this importance, 1 to 10.
    #[arg(long, value_name = "N")]
    pub min_importance: Option<Importance>,
}

/// `context`.
#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Memory id at the centre.
    pub id: MemoryId,
    /// Link hops to follow, 0 to context_hops_max [default: context_hops_max].
    #[arg(long, value_name = "N")]
    pub hops: Option<u32>,
    /// Neighbours followed from each memory, most important first, 1 to
    /// context_fan_out_max [default: context_fan_out_max].
    #[arg(long, value_name = "N")]
    pub fan_out: Option<u32>,
    /// Memories printed, the centre included, 1 to context_memories_max
    /// [default: context_memories_max].
    #[arg(long, short = 'l', value_name = "N")]
    pub limit: Option<u32>,
    /// Follow links to archived memories too.
    #[arg(long)]
    pub include_archived: bool,
}

/// `count`.
#[derive(Debug, Args)]
pub struct CountArgs {
    /// Count archived memories too.
    #[arg(long)]
    pub include_archived: bool,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file (atomically: all or nothing) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Export archived memories too.
    #[arg(long)]
    pub include_archived: bool,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON lines file, one memory per line: what export writes, or records
    /// of another tool. Only `content` is required; a record without `id`
    /// gets a new one (reported); fields: id, namespace, content, summary,
    /// memory_type, importance, tags, links, created_at, updated_at,
    /// accessed_at, access_count, archived; any other field refuses the line.
    pub file: PathBuf,
    /// What to do with a memory whose id is already stored.
    #[arg(long, value_enum, default_value_t = ConflictArg::Skip)]
    pub on_conflict: ConflictArg,
    /// FILE is an export of the system Mnemosyne replaces (its `mnemosyne
    /// export`: a JSON array, JSON lines, or an object with `memories`):
    /// namespaces, types, importance, tags and links are mapped, records
    /// that cannot be are skipped, and the report says what was mapped.
    #[arg(long)]
    pub from_original: bool,
}

/// Order of `list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortArg {
    /// Most recently updated first.
    Recent,
    /// Highest importance first, then most recent.
    Importance,
}

impl From<SortArg> for ListSort {
    fn from(sort: SortArg) -> Self {
        match sort {
            SortArg::Recent => ListSort::Recent,
            SortArg::Importance => ListSort::Importance,
        }
    }
}

/// `--on-conflict` of `import`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConflictArg {
    /// Keep the stored memory and count the imported one as skipped.
    Skip,
    /// Stop at the first batch holding a known id; earlier batches stay imported.
    Fail,
}

impl From<ConflictArg> for OnConflict {
    fn from(conflict: ConflictArg) -> Self {
        match conflict {
            ConflictArg::Skip => OnConflict::Skip,
            ConflictArg::Fail => OnConflict::Fail,
        }
    }
}

/// `ID` or `ID:TYPE`.
fn parse_link(text: &str) -> Result<Link, mnemosyne_core::Error> {
    let (id, link_type) = match text.split_once(':') {
        Some((id, link_type)) => (id, link_type.parse()?),
        None => (text, LinkType::default()),
    };
    Ok(Link {
        target: id.parse()?,
        link_type,
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn links_parse_with_and_without_a_type() {
        let id = MemoryId::new();
        let link = parse_link(&id.to_string()).unwrap();
        assert_eq!(link.target, id);
        assert_eq!(link.link_type, LinkType::RelatesTo);
        let link = parse_link(&format!("{id}:fixes")).unwrap();
        assert_eq!(link.link_type, LinkType::Fixes);
        let err = parse_link(&format!("{id}:likes")).unwrap_err();
        assert!(err.to_string().contains("unknown link type"), "{err}");
        let err = parse_link("nope:fixes").unwrap_err();
        assert!(err.to_string().contains("not a memory id"), "{err}");
    }

    #[test]
    fn global_options_go_after_the_subcommand_too() {
        let cli =
            Cli::try_parse_from(["mnemosyne", "count", "--json", "-vv", "--db", "x.db"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(cli.global.db.as_deref(), Some("x.db"));
    }
}
