#!/usr/bin/env python3
"""Prints the file-level module graph of src/ (who names whom through
`crate::`, `super::` or a sibling module) and every cycle in it.

Usage: scripts/module-graph.py [--check]   (--check: exit 1 on a cycle)
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

def modules():
    found = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs") or name in ("main.rs", "build.rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            found["::".join(parts)] = os.path.join(dirpath, name)
    return found

def strip_tests(text):
    # Test modules may name anything; the graph is of the library.
    cut = re.search(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", text)
    return text[: cut.start()] if cut else text

def resolve(mods, path):
    """Longest prefix of `path` (a list of names) that is a module."""
    for end in range(len(path), 0, -1):
        name = "::".join(path[:end])
        if name in mods:
            return name
    return None

def edges(mods):
    out = {m: set() for m in mods}
    for module, file in mods.items():
        text = strip_tests(open(file).read())
        text = re.sub(r"//[^\n]*", "", text)
        here = module.split("::") if module else []
        is_dir = file.endswith(("mod.rs", "lib.rs"))
        parent = here if is_dir else here[:-1]
        for match in re.finditer(r"\b(crate|super|self)((?:::\{?[A-Za-z_][A-Za-z0-9_]*)+)", text):
            head, rest = match.group(1), match.group(2)
            names = [n.strip("{") for n in rest.split("::") if n.strip("{")]
            if head == "crate":
                base = []
            elif head == "super":
                # The parent of this module (for a mod.rs, of its directory).
                base = here[:-1]
            else:
                base = here if is_dir else parent
            target = resolve(mods, base + names)
            if target is not None and target != module and not module.startswith(target + "::") and target != "":
                out[module].add(target)
    return out

def cycles(graph):
    index, low, stack, on, result = {}, {}, [], set(), []
    counter = [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                result.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return result

def main():
    mods = modules()
    graph = edges(mods)
    for module in sorted(graph):
        if module:
            print(f"{module} -> {', '.join(sorted(graph[module])) or '-'}")
    found = cycles(graph)
    print(f"\n{len(found)} cycle(s)")
    for comp in found:
        print("  " + " <-> ".join(comp))
    if "--check" in sys.argv and found:
        sys.exit(1)

main()
