"""Import cycles between the engine's modules (scripts/lint.sh runs it on src/; exit 1 if any).

The graph: an edge A -> B when module A's file names an item of module B — a `use` or a path
through `crate::`, `super::` or a child module (resolved to the longest module prefix). Module
declarations (`mod x;`) and in-file `#[cfg(test)] mod tests` are not edges. A textual check, not a
compiler's: it errs on the side of reporting.
    python3 scripts/module_cycles.py src
"""
import re, os, sys
root = sys.argv[1]
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split('/')
            if parts[-1] in ('mod', 'lib'):
                parts = parts[:-1]
            files['::'.join(parts)] = p
def resolve(mod, path):
    # path: list of segments relative to crate root; longest prefix that is a module file
    for n in range(len(path), 0, -1):
        m = '::'.join(path[:n])
        if m in files:
            return m
    return ''
edges = {}
for mod, p in files.items():
    if '::tests' in '::' + mod or mod.endswith('tests'):
        continue
    src = open(p).read()
    src = re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*', '', src, flags=re.S)  # drop in-file test modules (at the end)
    src = re.sub(r'//.*', '', src)
    here = mod.split('::') if mod else []
    targets = set()
    # Expand one level of braces: `super::{a, b::c}` -> `super::a`, `super::b::c`.
    def expand(m):
        prefix, inner = m.group(1), m.group(2)
        return ' '.join(prefix + '::' + x.strip() for x in re.split(r',(?![^{]*\})', inner) if x.strip())
    for _ in range(2):
        src = re.sub(r'\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^{}]*)\}', expand, src)
    for m in re.finditer(r'\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)', src):
        segs = m.group(2).split('::')[1:]
        base = [] if m.group(1) == 'crate' else (here[:-1] if not files[mod].endswith(('mod.rs', 'lib.rs')) else here[:-1])
        if m.group(1) == 'super':
            # super of a file module x::y (y.rs or y/mod.rs) is x
            base = here[:-1]
        t = resolve(mod, base + segs)
        if t != mod:
            targets.add(t)
    for m in re.finditer(r'^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([a-z_][a-z0-9_]*)::', src, flags=re.M):
        first = m.group(1)
        if first in ('std', 'core', 'crate', 'super', 'self', 'thiserror', 'serde', 'serde_json', 'half', 'rand_core', 'rand_chacha', 'tokenizers', 'seq_macro'):
            continue
        t = resolve(mod, here + [first])
        if t and t != mod:
            targets.add(t)
    # Paths through a child module (`parse::parse(..)`, `kernels::attend(..)` after `use crate::kernels`).
    for child in [m2 for m2 in files if m2.startswith(mod + '::' if mod else '') and m2.count('::') == (mod.count('::') + 1 if mod else 0)]:
        name = child.split('::')[-1]
        if re.search(r'(?<![:\w])' + name + r'::', src):
            targets.add(child)
    edges[mod] = targets
cycles = [(a, b) for a in edges for b in edges[a] if a in edges.get(b, ())]
for a, b in sorted(set(tuple(sorted(c)) for c in cycles)):
    print('cycle:', a or '<lib>', '<->', b or '<lib>')
# longer cycles: DFS
import itertools
def find():
    color = {}; stack = []; out = []
    def dfs(u):
        color[u] = 1; stack.append(u)
        for v in edges.get(u, ()):
            if v not in edges: continue
            if color.get(v) == 1:
                out.append(stack[stack.index(v):] + [v])
            elif not color.get(v):
                dfs(v)
        stack.pop(); color[u] = 2
    for u in edges:
        if not color.get(u): dfs(u)
    return out
for c in find():
    print('cycle path:', ' -> '.join(x or '<lib>' for x in c))
print(len(edges), 'modules checked')
sys.exit(1 if cycles or find() else 0)
