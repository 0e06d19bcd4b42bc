//! `context`: one memory with its linked neighbourhood.

use anyhow::Result;
use mnemosyne_core::Memory;
use mnemosyne_storage::{ContextQuery, LinkDirection, Neighbourhood};

use super::store_session::with_store;
use crate::cli::ContextArgs;
use crate::config::Settings;
use crate::output::{self, Output};

pub async fn run(args: ContextArgs, settings: &Settings, out: Output) -> Result<()> {
    let query = ContextQuery {
        id: args.id,
        hops: args.hops,
        fan_out: args.fan_out,
        limit: args.limit,
        include_archived: args.include_archived,
    };
    let found = with_store(settings, async |store| Ok(store.context(query).await?)).await?;
    let width = output::width();
    out.emit(&found, |w| write_neighbourhood(w, &found, width))
}

fn head(memory: &Memory) -> String {
    format!(
        "{}  {}  importance {}  {}{}",
        memory.id,
        memory.namespace,
        memory.importance,
        memory.memory_type,
        if memory.archived { "  (archived)" } else { "" }
    )
}

fn write_neighbourhood(
    w: &mut dyn std::io::Write,
    found: &Neighbourhood,
    width: usize,
) -> std::io::Result<()> {
    let room = width.saturating_sub(4).max(20);
    writeln!(w, "{}", head(&found.memory))?;
    writeln!(w, "    {}", output::preview(&found.memory.content, room))?;
    for neighbour in &found.neighbours {
        writeln!(w)?;
        writeln!(
            w,
            "hop {}  {}  via {}",
            neighbour.hop,
            head(&neighbour.memory),
            neighbour.via
        )?;
        writeln!(
            w,
            "    {}",
            output::preview(&neighbour.memory.content, room)
        )?;
    }
    if !found.edges.is_empty() {
        writeln!(w)?;
        writeln!(w, "links")?;
    }
    for edge in &found.edges {
        let seen_from = match edge.direction {
            LinkDirection::Outgoing => "outgoing",
            LinkDirection::Incoming => "incoming",
        };
        writeln!(
            w,
            "  {} -[{}]-> {}  (hop {}, {seen_from} from {})",
            edge.source, edge.link_type, edge.target, edge.hop, edge.from
        )?;
    }
    let n = found.neighbours.len();
    writeln!(w)?;
    writeln!(
        w,
        "{n} linked memor{} within {} hop{} (fan-out {}, limit {}){}",
        if n == 1 { "y" } else { "ies" },
        found.hops,
        if found.hops == 1 { "" } else { "s" },
        found.fan_out,
        found.limit,
        if found.truncated {
            "; truncated: more were within reach"
        } else {
            ""
        }
    )
}
