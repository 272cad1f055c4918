#!/usr/bin/env python3
"""No import circle inside a service crate (issue 30): a module graph of command-api,
query-api and projector, built from the `crate::` and `super::` paths each module names
(outside comments, `#[cfg(test)] mod tests` and `macro_rules!` bodies, whose paths resolve
where the macro is expanded), must have no cycle. A child naming its parent is an edge;
a parent's `mod child;` is not. Exits 1 naming the modules of each cycle."""
import os
import re
import sys

CRATES = ["command-api", "query-api", "projector"]


def modules(src):
    found = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            parts = os.path.relpath(path, src)[:-3].split("/")
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found["::".join(parts) or "crate"] = path
    return found


def without_macro_bodies(text):
    while "macro_rules!" in text:
        start = text.index("macro_rules!")
        depth, end = 0, len(text)
        for at in range(text.index("{", start), len(text)):
            depth += (text[at] == "{") - (text[at] == "}")
            if depth == 0:
                end = at + 1
                break
        text = text[:start] + text[end:]
    return text


def edges(mods):
    graph = {}
    for module, path in mods.items():
        text = open(path).read()
        cut = text.find("#[cfg(test)]\nmod tests")
        text = text[:cut] if cut >= 0 else text
        text = without_macro_bodies(re.sub(r"//[^\n]*", "", text))
        parent = module if path.endswith("mod.rs") else "::".join(module.split("::")[:-1]) or "crate"
        named = set()
        for match in re.finditer(r"crate::([a-z_0-9]+(?:::[a-z_0-9]+)*)", text):
            segments = match.group(1).split("::")
            for k in range(len(segments), 0, -1):
                if "::".join(segments[:k]) in mods:
                    named.add("::".join(segments[:k]))
                    break
        for match in re.finditer(r"super::([a-z_0-9]+)", text):
            child = match.group(1) if parent == "crate" else f"{parent}::{match.group(1)}"
            named.add(child if child in mods else parent)
        graph[module] = named - {module, "crate"}
    graph.pop("crate", None)
    return graph


def cycles(graph):
    index, low, stack, on, found = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
failed = False
for crate in CRATES:
    for cycle in cycles(edges(modules(os.path.join(crate, "src")))):
        print(f"{crate}: modules import each other in a circle: {', '.join(cycle)}")
        failed = True
if failed:
    sys.exit(1)
print(f"import-cycles: none in {', '.join(CRATES)}")
