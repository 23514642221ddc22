"""The dependency graph of a catalog's dataflows.

Dataflow B depends on A when B reads A's destination (or names A in ``depends_on``). The graph
gives a deterministic topological order (ties broken by name) and the descendants of a node,
which the executor skips when the node fails.
"""

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from coolie_core.locations import destination_storage, source_storage
from coolie_core.models import Catalog, Dataflow

__all__ = ["Lineage", "LineageProblem", "build_lineage"]


@dataclass(frozen=True, slots=True)
class LineageProblem:
    """A graph-level catalog problem: cycle, two producers, self-read, unknown upstream."""

    dataflow: str
    field: str
    message: str


@dataclass(frozen=True)
class Lineage:
    """Upstream/downstream edges between dataflow names."""

    upstream: dict[str, frozenset[str]]
    downstream: dict[str, frozenset[str]] = field(default_factory=dict)

    def order(self, names: Iterable[str] | None = None) -> list[str]:
        """Topological order of ``names`` (all by default): upstream first, ties by name.

        The global order restricted to ``names``, so edges through dataflows outside ``names``
        still order the ones inside. Linear in the size of the graph.
        """
        ordered, _ = _kahn(self.upstream, self.downstream)
        if names is None:
            return ordered
        selected = set(names)
        return [n for n in ordered if n in selected]

    def ancestors(self, name: str) -> set[str]:
        return self._walk(name, self.upstream)

    def descendants(self, name: str) -> set[str]:
        return self._walk(name, self.downstream)

    @staticmethod
    def _walk(start: str, edges: dict[str, frozenset[str]]) -> set[str]:
        seen: set[str] = set()
        stack = list(edges.get(start, ()))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(edges.get(node, ()))
        return seen


def build_lineage(catalog: Catalog) -> tuple[Lineage, list[LineageProblem]]:
    """Build the graph and list every graph-level problem (none means the graph is a DAG)."""
    problems: list[LineageProblem] = []
    flows = catalog.dataflows
    names = {f.name for f in flows}
    # Keyed by URI (an absolute path for local tables): the same table however it is written.
    producers: dict[str, str] = {}
    for flow in flows:
        target = destination_storage(catalog, flow).uri
        other = producers.get(target)
        if other is not None:
            problems.append(
                LineageProblem(
                    flow.name,
                    "destination",
                    f"writes {target}, which dataflow {other} also writes; one destination, one producer",
                )
            )
        else:
            producers[target] = flow.name

    upstream: dict[str, set[str]] = {f.name: set() for f in flows}
    for flow in flows:
        for dep in flow.depends_on:
            if dep not in names:
                problems.append(
                    LineageProblem(
                        flow.name, "depends_on", f"upstream dataflow {dep!r} is not in the catalog"
                    )
                )
            else:
                upstream[flow.name].add(dep)
        src = source_storage(catalog, flow)
        if src is None:
            continue
        # A source reads a destination when it is that folder or lies inside it: look the source
        # and each of its parents up (linear in the number of dataflows, not quadratic).
        for candidate in (src, *src.parents):
            producer = producers.get(candidate.uri)
            if producer is None:
                continue
            if producer == flow.name:
                problems.append(
                    LineageProblem(
                        flow.name,
                        "source",
                        "reads its own destination; a dataflow cannot read what it writes",
                    )
                )
            else:
                upstream[flow.name].add(producer)

    frozen = {n: frozenset(u) for n, u in upstream.items()}
    downstream: dict[str, set[str]] = {n: set() for n in upstream}
    for name, ups in frozen.items():
        for up in ups:
            downstream[up].add(name)
    lineage = Lineage(frozen, {n: frozenset(d) for n, d in downstream.items()})
    problems.extend(_cycles(lineage, flows))
    return lineage, problems


def _kahn(
    upstream: dict[str, frozenset[str]], downstream: dict[str, frozenset[str]]
) -> tuple[list[str], set[str]]:
    """Kahn's algorithm with a min-heap (ties by name): the order, and the nodes left in cycles."""
    pending = {name: len(ups) for name, ups in upstream.items()}
    ready = [name for name, count in pending.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(name)
        for child in downstream.get(name, ()):
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, child)
    return ordered, set(upstream) - set(ordered)


def _cycles(lineage: Lineage, flows: list[Dataflow]) -> list[LineageProblem]:
    _, stuck = _kahn(lineage.upstream, lineage.downstream)
    problems = []
    reported: set[str] = set()
    for flow in flows:
        name = flow.name
        if name not in stuck or name in reported or name not in lineage.ancestors(name):
            continue
        members = sorted(n for n in lineage.ancestors(name) if name in lineage.ancestors(n))
        reported.update(members)
        problems.append(
            LineageProblem(
                name,
                "source",
                f"dependency cycle: {' -> '.join(members)} -> {members[0]}",
            )
        )
    return problems
