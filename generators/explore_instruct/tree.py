"""The domain tree of EXPLORE-INSTRUCT (Wan et al., EMNLP 2023, §2.1): a domain is a tree of tasks.

Each node is a task (`task_name`, `raw_task_name`, `reason`, `examples[{instruction, input, output}]`)
whose children are finer subtasks. On disk it is upstream's layout, so trees move between the two:
`tree_meta_info.json` holds the hierarchy (raw_task_name, task_name, config_filename, reason,
children) and each node has its own `config_filename` JSON (raw_task_name, task_name,
config_filename, reason, examples).

    tree = load_tree("en_data/demo_domain"); tree.add_child(tree.root, "Tone adjustment", why, exs)
    save_tree(tree, "out/tree")
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError

META_FILE = "tree_meta_info.json"
EXAMPLE_FIELDS = ("instruction", "input", "output")


@dataclass(eq=False)
class TaskNode:
    """One task of the domain; `children` are its subtasks (a child's skills are within its own)."""

    task_name: str
    """Identifier: lowercase words joined by `_`, unique in the tree (also names the node's file)."""
    raw_task_name: str
    """The name as written by a person or the model, e.g. "Fix spelling and grammar"."""
    reason: str = ""
    """Why this subtask is needed for its parent task (empty for the root)."""
    examples: list[dict[str, str]] = field(default_factory=list)
    children: list[TaskNode] = field(default_factory=list)
    config_filename: str = ""
    """The node's JSON file in the tree folder (default: `<task_name>.json`)."""
    parent: TaskNode | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.config_filename = self.config_filename or f"{self.task_name}.json"

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    @property
    def peers(self) -> list[TaskNode]:
        """The other children of this node's parent (upstream's "peer tasks")."""
        return [] if self.parent is None else [n for n in self.parent.children if n is not self]


class DomainTree:
    """A root task and its descendants, with names kept unique (each name is also a file name)."""

    def __init__(self, root: TaskNode):
        self.root = root
        self._by_name: dict[str, TaskNode] = {}
        for node in self.nodes():
            self._by_name[node.task_name] = node

    def nodes(self) -> Iterator[TaskNode]:
        """Every node, breadth-first (root, then depth 1 in order, ...): the order of every step."""
        level = [self.root]
        while level:
            yield from level
            level = [child for node in level for child in node.children]

    def at_depth(self, depth: int) -> list[TaskNode]:
        return [n for n in self.nodes() if n.depth == depth]

    def __getitem__(self, task_name: str) -> TaskNode:
        return self._by_name[task_name]

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def max_depth(self) -> int:
        return max(n.depth for n in self.nodes())

    def add_child(
        self, parent: TaskNode, raw_task_name: str, reason: str, examples: list[dict[str, str]]
    ) -> TaskNode:
        """Append a new subtask under `parent`, with a unique task_name derived from its raw name."""
        base = task_name_of(raw_task_name)
        name, k = base, 2
        while name in self._by_name:
            name, k = f"{base}_{k}", k + 1
        node = TaskNode(name, raw_task_name.strip(), reason.strip(), list(examples), parent=parent)
        parent.children.append(node)
        self._by_name[name] = node
        return node

    def sizes(self) -> dict[str, Any]:
        """Nodes per depth and examples per node, for reports."""
        per_depth: dict[str, int] = {}
        for node in self.nodes():
            per_depth[str(node.depth)] = per_depth.get(str(node.depth), 0) + 1
        return {
            "nodes": len(self),
            "nodes_per_depth": per_depth,
            "examples": sum(len(n.examples) for n in self.nodes()),
            "examples_per_node": {n.task_name: len(n.examples) for n in self.nodes()},
        }


def task_name_of(raw_task_name: str) -> str:
    """ "Fix spelling and grammar" -> "fix_spelling_and_grammar" (safe as a file name)."""
    name = re.sub(r"[^0-9a-z]+", "_", raw_task_name.lower()).strip("_")
    return name[:80] or "task"


def new_tree(domain: str, examples: list[dict[str, str]]) -> DomainTree:
    """A one-node tree: the domain as the root task with its seed examples."""
    return DomainTree(TaskNode(task_name_of(domain), domain.strip(), "", list(examples)))


# ----------------------------------------------------------------------------------------- files


def _field(obj: dict[str, Any], key: str, kind: type, path: Path, where: str) -> Any:
    if key not in obj:
        raise InputError(f"missing{where}", path=path, field=key)
    if not isinstance(obj[key], kind):
        raise InputError(
            f"must be {kind.__name__}, got {type(obj[key]).__name__}{where}", path=path, field=key
        )
    return obj[key]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError("no such file", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path=path, line=e.lineno) from e
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e.reason})", path=path) from e


def check_examples(examples: Any, path: Path, key: str = "examples") -> list[dict[str, str]]:
    """The examples as {instruction, input, output} dicts; a bad item raises a one-line InputError."""
    if not isinstance(examples, list):
        raise InputError(f"must be a list, got {type(examples).__name__}", path=path, field=key)
    checked = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise InputError(
                f"must be an object, got {type(example).__name__}", path=path, field=f"{key}[{i}]"
            )
        for name in EXAMPLE_FIELDS:
            _field(example, name, str, path, f" in {key}[{i}]")
        checked.append({name: example[name] for name in EXAMPLE_FIELDS})
    return checked


def load_tree(folder: str | Path) -> DomainTree:
    """Read an upstream tree folder; a bad file or field raises InputError naming both."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise InputError("not a folder (expected a tree folder with tree_meta_info.json)", path=folder)
    meta = _read_json(meta_path)
    files: set[str] = set()

    def build(entry: Any, parent: TaskNode | None, where: str) -> TaskNode:
        if not isinstance(entry, dict):
            raise InputError(f"must be an object{where}", path=meta_path, field="children")
        raw = _field(entry, "raw_task_name", str, meta_path, where)
        name = _field(entry, "task_name", str, meta_path, where)
        filename = entry.get("config_filename") or f"{name}.json"
        if not isinstance(filename, str) or Path(filename).name != filename:
            raise InputError(
                f"must be a plain file name, got {filename!r}{where}", path=meta_path, field="config_filename"
            )
        if filename in files:
            raise InputError(
                f"{filename!r} is used by two nodes{where}", path=meta_path, field="config_filename"
            )
        files.add(filename)
        node_path = folder / filename
        data = _read_json(node_path)
        if not isinstance(data, dict):
            raise InputError(f"expected a JSON object, got {type(data).__name__}", path=node_path)
        node = TaskNode(
            name,
            raw,
            entry.get("reason") or "",
            check_examples(_field(data, "examples", list, node_path, ""), node_path),
            config_filename=filename,
            parent=parent,
        )
        if not isinstance(node.reason, str):
            raise InputError(f"must be str{where}", path=meta_path, field="reason")
        for key in ("task_name", "raw_task_name"):
            if key in data and data[key] != getattr(node, key):
                raise InputError(
                    f"{data[key]!r} disagrees with {META_FILE} ({getattr(node, key)!r})",
                    path=node_path,
                    field=key,
                )
        children = entry.get("children", [])
        if not isinstance(children, list):
            raise InputError(f"must be a list{where}", path=meta_path, field="children")
        node.children = [build(child, node, f" (under {name!r})") for child in children]
        return node

    tree = DomainTree(build(meta, None, ""))
    if len(tree) != len(files):
        raise InputError("two nodes share a task_name", path=meta_path, field="task_name")
    return tree


def _meta(node: TaskNode) -> dict[str, Any]:
    return {
        "raw_task_name": node.raw_task_name,
        "task_name": node.task_name,
        "config_filename": node.config_filename,
        "reason": node.reason,
        "children": [_meta(child) for child in node.children],
    }


def node_file(node: TaskNode) -> dict[str, Any]:
    """The content of a node's own JSON file."""
    return {
        "raw_task_name": node.raw_task_name,
        "task_name": node.task_name,
        "config_filename": node.config_filename,
        "reason": node.reason,
        "examples": node.examples,
    }


def save_tree(tree: DomainTree, folder: str | Path) -> Path:
    """Write the tree in upstream's layout (each file atomically; the meta file last)."""
    from engine.run.io import write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for node in tree.nodes():
        write_json(folder / node.config_filename, node_file(node))
    write_json(folder / META_FILE, _meta(tree.root))
    return folder
