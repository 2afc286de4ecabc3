#!/usr/bin/env python3
"""Prints the import loops between the crate's source files: the cycles of the graph whose nodes
are the files under src/ and whose edges are their `use crate::…` / `use super::…` lines (braced
groups included) and the `crate::…` / `super::…` paths written in code, each resolved to the
deepest module file it names. A loop of one file with
itself is not one; unit tests (an inline `#[cfg(test)] mod`, at the bottom of their file by the
project's convention) are left out. Exits 1 when there is a loop, 0 when there is none.

Usage: scripts/import-loops.py [--allow FILE,FILE…]… [SRC_DIR]   (default: src)
A loop of exactly the files an --allow names is printed but allowed (a genuinely recursive type).
"""

import re
import sys
from pathlib import Path


def module_of(path: Path, src: Path) -> tuple[str, ...]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def use_paths(text: str) -> list[tuple[int, list[str]]]:
    """Every path a `use` statement names, with braces expanded, and how many inline `mod … {}`
    blocks deep the statement stands (a `super` there is the inline module's parent)."""
    text = re.sub(r"//[^\n]*", "", text)
    tests = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    if tests:
        text = text[: tests.start()]
    paths, inline, depth = [], [], 0
    pattern = r"\bmod\s+\w+\s*\{|\{|\}|\buse\s+[^;]+;|\b(?:crate|super)(?:::\w+)+"
    for token in re.finditer(pattern, text):
        t = token.group(0)
        if t.startswith(("crate", "super")):
            paths.append((len(inline), t.split("::")))
        elif t.startswith("mod"):
            depth += 1
            inline.append(depth)
        elif t == "{":
            depth += 1
        elif t == "}":
            if inline and inline[-1] == depth:
                inline.pop()
            depth -= 1
        else:
            paths.extend((len(inline), p) for p in expand(t[3:-1]))
    return paths


def expand(stmt: str) -> list[list[str]]:
    """The paths of one `use` tree."""
    paths, stack = [], [("", re.sub(r"\s+", "", stmt))]
    while stack:
        prefix, rest = stack.pop()
        brace = rest.find("{")
        if brace < 0:
            paths.append((prefix + rest).split("::"))
            continue
        head, body = rest[:brace], rest[brace + 1 : rest.rindex("}")]
        level, item, items = 0, "", []
        for ch in body:
            if ch == "," and level == 0:
                items.append(item)
                item = ""
                continue
            level += (ch == "{") - (ch == "}")
            item += ch
        items.append(item)
        stack.extend((prefix + head, i) for i in items if i)
    return paths


def main() -> int:
    args, allowed = sys.argv[1:], []
    while args and args[0] == "--allow":
        allowed.append(frozenset(args[1].split(",")))
        args = args[2:]
    src = Path(args[0] if args else "src")
    files = {module_of(p, src): p for p in src.rglob("*.rs") if "bin" not in p.parts}
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in files}
    for module, path in files.items():
        for nested, p in use_paths(path.read_text()):
            if p[0] == "crate":
                target = list(p[1:])
            elif p[0] == "super":
                base = list(module) + ["(inline)"] * nested
                while p and p[0] == "super":
                    base, p = base[:-1], p[1:]
                target = base + list(p)
            elif p[0] == "self" and not nested:
                target = list(module) + list(p[1:])
            else:
                continue
            while target and tuple(target) not in files:
                target.pop()
            dest = tuple(target)
            if dest != module and dest in files:
                edges[module].add(dest)

    # Tarjan's strongly connected components.
    index, low, on_stack, stack, loops, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(component)

    sys.setrecursionlimit(10000)
    for v in sorted(files):
        if v not in index:
            visit(v)
    refused = 0
    for component in loops:
        names = sorted(str(files[m].relative_to(src.parent)) for m in component)
        ok = frozenset(names) in allowed
        refused += not ok
        print(f"loop of {len(names)}{' (allowed)' if ok else ''}: " + ", ".join(names))
    print(f"{len(loops)} import loop(s) among {len(files)} files, {refused} not allowed")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
