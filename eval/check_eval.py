#!/usr/bin/env python3
"""Validate eval/recall-eval.json: schema, counts and per-kind heuristics.

Usage: python3 eval/check_eval.py [path/to/recall-eval.json]
Exits non-zero and lists every problem if the file breaks a rule.
"""

import json
import re
import sys
from collections import Counter
from pathlib import Path

MEMORY_TYPES = {"note", "decision", "fact", "pattern", "bugfix", "preference", "context"}
LINK_TYPES = {"relates_to", "depends_on", "supersedes", "contradicts", "derived_from", "fixes", "part_of"}
KINDS = ("keyword", "paraphrase", "typo", "namespace", "linked")
MIN_MEMORIES = 220
MIN_QUERIES = 70
MIN_PER_KIND = 12
WORDS_MIN, WORDS_MAX = 25, 90
PART = r"[A-Za-z0-9_.\-]{1,64}"
NAMESPACE_RE = re.compile(rf"^(global|project:{PART}|session:{PART}/{PART})$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
STOPWORDS = set(
    "a an the and or of in on to for with by at is are was were be been it its this that "
    "what which who how do does did when why where after before from into over as not no "
    "my our we us i you they them every all any some still".split()
)

errors: list[str] = []
warnings: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def tokens(text: str) -> list[str]:
    """Roughly what FTS5's unicode61 tokenizer produces: lower-case alphanumeric runs."""
    return re.findall(r"[a-z0-9]+", text.lower())


def content_tokens(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in STOPWORDS]


def visible_from(query_ns: str) -> set[str]:
    """Namespaces a query in `query_ns` sees: itself, its project (for a session), global."""
    if query_ns == "global":
        return {"global"}
    if query_ns.startswith("project:"):
        return {query_ns, "global"}
    project = query_ns[len("session:"):].split("/", 1)[0]
    return {query_ns, f"project:{project}", "global"}


def edit_distance_le(a: str, b: str, k: int) -> bool:
    """Damerau-Levenshtein (optimal string alignment) distance <= k."""
    if abs(len(a) - len(b)) > k:
        return False
    prev2 = None
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)] <= k


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("recall-eval.json")
    data = json.loads(path.read_text())
    if set(data) != {"memories", "queries"}:
        err(f"top-level keys must be memories and queries, got {sorted(data)}")
    memories = data.get("memories", [])
    queries = data.get("queries", [])

    # ---- memories ----
    by_key: dict[str, dict] = {}
    for i, m in enumerate(memories):
        key = m.get("key")
        where = f"memory #{i} ({key})"
        expected = {"key", "namespace", "content", "tags", "importance", "memory_type", "links"}
        if set(m) != expected:
            err(f"{where}: fields must be {sorted(expected)}, got {sorted(m)}")
        if not isinstance(key, str) or not key:
            err(f"{where}: key must be a non-empty string")
            continue
        if key in by_key:
            err(f"{where}: duplicate key")
        by_key[key] = m
        if not NAMESPACE_RE.match(str(m.get("namespace"))):
            err(f"{where}: bad namespace {m.get('namespace')!r}")
        if m.get("memory_type") not in MEMORY_TYPES:
            err(f"{where}: bad memory_type {m.get('memory_type')!r}")
        imp = m.get("importance")
        if not isinstance(imp, int) or isinstance(imp, bool) or not 1 <= imp <= 10:
            err(f"{where}: importance must be an integer 1..10, got {imp!r}")
        tags = m.get("tags", [])
        if not isinstance(tags, list) or len(tags) > 4:
            err(f"{where}: tags must be a list of 0 to 4")
        else:
            for t in tags:
                if not isinstance(t, str) or not TAG_RE.match(t):
                    err(f"{where}: tag {t!r} must be lower-case without spaces")
            if tags != sorted(set(tags)):
                err(f"{where}: tags must be sorted and unique (the store normalises them so)")
        words = len(str(m.get("content", "")).split())
        if not WORDS_MIN <= words <= WORDS_MAX:
            err(f"{where}: content has {words} words, want {WORDS_MIN}..{WORDS_MAX}")

    contents = {k: m["content"] for k, m in by_key.items()}
    vocab = set()
    for c in contents.values():
        vocab.update(tokens(c))

    linked_count = 0
    link_types = Counter()
    out_links: dict[str, set[str]] = {k: set() for k in by_key}
    for key, m in by_key.items():
        links = m.get("links", [])
        if not isinstance(links, list):
            err(f"memory {key}: links must be a list")
            continue
        if links:
            linked_count += 1
            if len(links) > 3:
                err(f"memory {key}: at most 3 links, got {len(links)}")
        seen = set()
        for link in links:
            target, lt = link.get("target"), link.get("link_type")
            if set(link) != {"target", "link_type"}:
                err(f"memory {key}: link fields must be target and link_type, got {sorted(link)}")
            if target not in by_key:
                err(f"memory {key}: link target {target!r} does not exist")
            if target == key:
                err(f"memory {key}: links to itself")
            if lt not in LINK_TYPES:
                err(f"memory {key}: bad link_type {lt!r}")
            if (target, lt) in seen:
                err(f"memory {key}: duplicate link {target} {lt}")
            seen.add((target, lt))
            link_types[lt] += 1
            out_links[key].add(target)

    if len(by_key) < MIN_MEMORIES:
        err(f"need at least {MIN_MEMORIES} memories, have {len(by_key)}")
    share = linked_count / max(len(by_key), 1)
    if not 0.07 <= share <= 0.15:
        err(f"about 10% of memories should have links, have {linked_count} ({share:.0%})")

    def neighbours(k: str) -> set[str]:
        return out_links.get(k, set()) | {s for s, ts in out_links.items() if k in ts}

    # ---- queries ----
    kinds = Counter()
    texts = set()
    for i, q in enumerate(queries):
        where = f"query #{i} ({q.get('kind')}: {q.get('text')!r})"
        if set(q) != {"text", "namespace", "relevant", "kind"}:
            err(f"{where}: fields must be text, namespace, relevant, kind; got {sorted(q)}")
        text, ns, rel, kind = q.get("text", ""), q.get("namespace"), q.get("relevant", []), q.get("kind")
        if not isinstance(text, str) or not text.strip():
            err(f"{where}: empty text")
            continue
        # The same text may repeat under different namespaces (that is the point
        # of some namespace queries), but not under the same one.
        if (text.lower(), ns) in texts:
            err(f"{where}: duplicate query text in the same namespace")
        texts.add((text.lower(), ns))
        if kind not in KINDS:
            err(f"{where}: bad kind")
        kinds[kind] += 1
        if not isinstance(rel, list) or not 1 <= len(rel) <= 3 or len(set(rel)) != len(rel):
            err(f"{where}: relevant must be 1 to 3 distinct keys")
            continue
        missing = [k for k in rel if k not in by_key]
        if missing:
            err(f"{where}: relevant keys do not exist: {missing}")
            continue
        if ns is not None:
            if not isinstance(ns, str) or not NAMESPACE_RE.match(ns):
                err(f"{where}: bad namespace {ns!r}")
                continue
            seen_ns = visible_from(ns)
            hidden = [k for k in rel if by_key[k]["namespace"] not in seen_ns]
            if hidden:
                err(f"{where}: relevant {hidden} not visible from {ns}")

        rel_text = " ".join(contents[k] for k in rel)
        rel_vocab = set(tokens(rel_text))
        qt = content_tokens(text)
        overlap = sum(t in rel_vocab for t in qt) / max(len(qt), 1)

        if kind == "keyword":
            if ns is not None:
                err(f"{where}: keyword queries use no namespace")
            if overlap < 0.6:
                err(f"{where}: only {overlap:.0%} of query words occur in the relevant memory")
        elif kind == "paraphrase":
            # A namespace is allowed here: it scopes an intent that several
            # projects share (visibility of the relevant keys is checked above).
            if overlap > 0.5:
                err(f"{where}: {overlap:.0%} of query words occur in the relevant memory; not a paraphrase")
            if overlap == 0:
                warnings.append(f"{where}: shares no word at all with the relevant memory")
        elif kind == "typo":
            if ns is not None:
                err(f"{where}: typo queries use no namespace")
            misspelled = [t for t in tokens(text) if t not in vocab]
            if not 1 <= len(misspelled) <= 2:
                err(f"{where}: want 1 or 2 misspelled words (not in the corpus), found {misspelled}")
            for t in misspelled:
                if not any(edit_distance_le(t, w, 2) for w in rel_vocab):
                    err(f"{where}: {t!r} is not a near-miss of a word in the relevant memory")
            correct = [t for t in qt if t in vocab]
            if correct and sum(t in rel_vocab for t in correct) / len(correct) < 0.6:
                err(f"{where}: the correctly spelled words should mostly come from the relevant memory")
        elif kind == "namespace":
            if ns is None:
                err(f"{where}: namespace queries need a namespace")
                continue
            seen_ns = visible_from(ns)
            rel_tags = set().union(*(by_key[k]["tags"] for k in rel))
            distractors = [
                k for k, m in by_key.items()
                if m["namespace"] not in seen_ns and rel_tags & set(m["tags"])
                and len(set(content_tokens(m["content"])) & set(qt)) >= 1
            ]
            if not distractors:
                err(f"{where}: no same-topic memory outside {ns}, so the namespace filter is not tested")
        elif kind == "linked":
            if not any(b in neighbours(a) for a in rel for b in rel if a != b):
                err(f"{where}: no link between the relevant memories")
            # The memory reached through the link should not be an obvious keyword hit.
            weakest = min(
                sum(t in set(tokens(contents[k])) for t in qt) / max(len(qt), 1) for k in rel
            )
            if weakest > 0.5:
                err(f"{where}: every relevant memory shares over half the query words; link expansion is not needed")

    if len(queries) < MIN_QUERIES:
        err(f"need at least {MIN_QUERIES} queries, have {len(queries)}")
    for kind in KINDS:
        if kinds[kind] < MIN_PER_KIND:
            err(f"need at least {MIN_PER_KIND} {kind} queries, have {kinds[kind]}")

    ns_counts = Counter(m["namespace"] for m in by_key.values())
    print(f"{path}: {len(by_key)} memories, {len(queries)} queries")
    print("memories per namespace: " + ", ".join(f"{n}={c}" for n, c in sorted(ns_counts.items())))
    print(f"memories with links: {linked_count} ({share:.0%}); link types: " +
          ", ".join(f"{t}={c}" for t, c in sorted(link_types.items())))
    print("queries per kind: " + ", ".join(f"{k}={kinds[k]}" for k in KINDS))
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
