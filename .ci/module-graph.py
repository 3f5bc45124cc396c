#!/usr/bin/env python3
"""Fails when a crate's module graph has a cycle.

For every module of a crate (a file under src/, `mod.rs` and `lib.rs`
naming their folder), the modules it uses through `crate::`, `super::` and
`self::` paths outside its `#[cfg(test)]` part are its edges; a parent
and its own children are not edges (a folder module and its files are one
concern), and comments (doc links) are not read. Prints every cycle found and exits 1 if there is any.

    .ci/module-graph.py core/src adapter-mio/src adapter-tokio/src proto/src
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")


def module_of(root, path):
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def graph(root):
    modules = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                modules[module_of(root, path)] = path
    edges = {}
    for module, path in modules.items():
        source = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
        # Code only: doc links name items, not dependencies.
        source = "\n".join(l.split("//")[0] for l in source.splitlines())
        deps = set()
        for kind, rest in PATH.findall(source):
            if kind == "crate":
                base = ()
            elif kind == "self":
                base = module
            else:  # super: the parent of this module
                base = module[:-1]
            full = base + tuple(rest.split("::"))
            # The longest prefix that is a module of the crate.
            while full and full not in modules:
                full = full[:-1]
            if not full or full == module:
                continue
            related = full[: len(module)] == module or module[: len(full)] == full
            if not related:
                deps.add(full)
        edges[module] = deps
    return edges


def cycles(edges):
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return found


def main(roots):
    bad = 0
    for root in roots:
        for component in cycles(graph(root)):
            names = sorted("::".join(m) or "crate" for m in component)
            print("%s: a cycle between %s" % (root, ", ".join(names)))
            bad += 1
    if bad == 0:
        print("module graphs acyclic: %s" % ", ".join(roots))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
