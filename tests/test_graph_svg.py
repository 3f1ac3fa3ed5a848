"""Pictures of graphs: `ik.graph_svg` writes an SVG (parsed here) that shows each op with
its parameters, dtypes and shapes, and inputs, shared variables and constants in styles of
their own; a function is drawn at the tensor level (after autodiff and rewrites); region
ops are clusters; DOT text needs no Graphviz; a missing `dot` is a clear error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import irkit as ik
from irkit.graph_dot import GraphvizNotFoundError, to_dot

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SVG = "{http://www.w3.org/2000/svg}"
def _graphviz_missing() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return True
    return shutil.which("dot") is None


# CI installs both (the graphviz package from the test extra, Debian's graphviz): there it runs
need_graphviz = pytest.mark.skipif(_graphviz_missing() and not os.environ.get("IRKIT_CI"),
                                   reason="the graphviz package or Graphviz's dot program is not installed")

# the fill colours graph_dot gives each kind of node
INPUT, SHARED, CONSTANT, OP = "#cfe2ff", "#ffe8a3", "#e9ecef", "#ffffff"


def _tool(name: str) -> str:
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return exe if os.path.exists(exe) else shutil.which(name)


def _mlp_loss():
    x = ik.matrix("x", dtype="float32", shape=(None, 8))
    t = ik.ivector("t")
    W1 = ik.shared(np.zeros((8, 5), np.float32), name="W1", shape=(8, 5))
    b1 = ik.shared(np.zeros(5, np.float32), name="b1")
    W2 = ik.shared(np.zeros((5, 3), np.float32), name="W2", shape=(5, 3))
    h = ik.tanh(x @ W1 + b1)
    p = ik.softmax(h @ W2, axis=-1)
    loss = -ik.mean(ik.log(p[ik.arange(x.shape[0]), t]))
    loss.name = "loss"
    return (x, t), (W1, b1, W2), loss


def _svg_nodes(path) -> dict[str, tuple[str, set[str]]]:
    """Each node of a Graphviz SVG: its lines of text, and the fill colours of its shapes."""
    tree = ET.parse(path)  # raises if the SVG is not well-formed XML
    nodes = {}
    for g in tree.getroot().iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        text = "\n".join(t.text or "" for t in g.iter(f"{SVG}text"))
        fills = {el.get("fill") for el in g if el.get("fill") not in (None, "none")}
        nodes[g.find(f"{SVG}title").text] = (text, fills)
    return nodes


def _fill_of(nodes: dict, first_line: str) -> set[str]:
    matches = [fills for text, fills in nodes.values() if text.split("\n")[0] == first_line]
    assert len(matches) == 1, f"{len(matches)} nodes start with {first_line!r}"
    return matches[0]


@need_graphviz
def test_an_mlp_loss_is_drawn_with_its_ops_shapes_and_dtypes(tmp_path):
    _, _, loss = _mlp_loss()
    path = ik.graph_svg(loss, tmp_path / "mlp.svg")
    assert path == str(tmp_path / "mlp.svg")
    nodes = _svg_nodes(path)
    texts = [text for text, _ in nodes.values()]
    ops = {t.split("\n")[0] for t in texts}
    assert {"ik.matmul", "ik.add", "ik.tanh", "ik.softmax", "ik.gather", "ik.log", "ik.sum", "ik.neg"} <= ops
    assert "x\ninput\nfloat32(?, 8)" in texts and "t\ninput\nint64(?,)" in texts
    assert "W1\nshared\nfloat32(8, 5)" in texts and "b1\nshared\nfloat32(?,)" in texts
    assert "ik.matmul\nfloat32(?, 5)" in texts and "ik.matmul\nfloat32(?, 3)" in texts
    assert "ik.softmax\naxis=1\nfloat32(?, 3)" in texts
    assert _fill_of(nodes, "x") == {INPUT} and _fill_of(nodes, "W1") == {SHARED}
    assert _fill_of(nodes, "ik.tanh") == {OP}
    constants = [fills for text, fills in nodes.values() if text.startswith("ik.constant")]
    assert constants and all(fills == {CONSTANT} for fills in constants)
    edges = [e for e in ET.parse(path).getroot().iter(f"{SVG}g") if e.get("class") == "edge"]
    assert any((t.text or "") == "loss" for e in edges for t in e.iter(f"{SVG}text"))  # the output's name


@need_graphviz
def test_a_function_is_drawn_at_the_tensor_level(tmp_path):
    (x, t), (W1, b1, W2), loss = _mlp_loss()
    grads = ik.grad(loss, [W1, b1, W2])
    f = ik.function([x, t], loss, updates=[(w, w - 0.1 * g) for w, g in zip((W1, b1, W2), grads)], name="step")
    nodes = _svg_nodes(ik.graph_svg(f, tmp_path / "step.svg"))
    drawn = sorted(text.split("\n")[0] for text, _ in nodes.values() if text.startswith("ik."))
    listed = sorted(re.findall(r"= (ik\.\w+)", f.ir("tensor")))
    assert drawn == listed and "ikad.grad" not in f.ir("tensor")  # the derivatives, taken
    dot = to_dot(f)
    assert dot.startswith('digraph "step" {')
    for name in ("W1", "b1", "W2"):
        assert f'label="new {name}"' in dot


def test_region_ops_are_clusters_holding_their_bodies():
    x, n = ik.vector("x"), ik.iscalar("n")
    h, _ = ik.scan(lambda xt, acc: acc * 0.5 + xt, sequences=[x], outputs_info=[ik.constant(0.0)])
    y = ik.ifelse(n > 0, h, -h)
    dot = to_dot(y)
    clusters = re.findall(r'subgraph cluster_\d+ \{\n\s*label="([^"]*)"', dot)
    assert clusters == ["func @main", "ik.scan", "body", "ik.if", "then_region", "else_region"]
    body = dot[dot.index('label="body"'):dot.index('label="ik.if"')]
    assert "ik.mul" in body and "ik.add" in body and "ik.yield" in body
    # what a body yields flows into its op
    yields = re.findall(r'(n\d+) \[label="ik.yield"', dot)
    assert len(yields) == 3 and all(re.search(rf"{y} -> n\d+ \[style=dashed", dot) for y in yields)


def test_the_dot_text_of_a_small_graph(tmp_path):
    """FileCheck over the DOT of a graph as built: nodes in data-flow order, then the edges."""
    x = ik.vector("x", dtype="float32", shape=(4,))
    s = ik.shared(np.float32(2.0), name="s")
    y = ik.exp(x * s) + 1.0
    checks = tmp_path / "checks.txt"
    checks.write_text(r"""
CHECK:      digraph "small" {
CHECK:        label="func @main";
CHECK-NEXT:   [[X:n[0-9]+]] [label="x\ninput\nfloat32(4,)", shape=invhouse
CHECK-NEXT:   [[S:n[0-9]+]] [label="s\nshared\nfloat32()", shape=cylinder
CHECK-NEXT:   [[MUL:n[0-9]+]] [label="ik.mul\nfloat32(4,)", shape=box
CHECK-NEXT:   [[EXP:n[0-9]+]] [label="ik.exp\nfloat32(4,)", shape=box
CHECK-NEXT:   [[ONE:n[0-9]+]] [label="ik.constant\n1.0\nfloat32()", shape=box, style="rounded,filled", fillcolor="#e9ecef"
CHECK-NEXT:   [[ADD:n[0-9]+]] [label="ik.add\nfloat32(4,)", shape=box
CHECK-NEXT:   [[OUT:n[0-9]+]] [label="outputs", shape=house
CHECK-NEXT: }
CHECK-NEXT: [[X]] -> [[MUL]];
CHECK-NEXT: [[S]] -> [[MUL]];
CHECK-NEXT: [[MUL]] -> [[EXP]];
CHECK-NEXT: [[EXP]] -> [[ADD]];
CHECK-NEXT: [[ONE]] -> [[ADD]];
CHECK-NEXT: [[ADD]] -> [[OUT]] [label="output"];
CHECK-NEXT: }
""")
    got = subprocess.run([_tool("filecheck"), str(checks)], input=to_dot(y, title="small"), capture_output=True,
                         text=True, timeout=120)
    assert got.returncode == 0, got.stdout + got.stderr


def test_irkit_opt_emits_dot_for_every_function_of_a_dsl_file():
    got = subprocess.run([_tool("irkit-opt"), os.path.join(ROOT, "examples", "mlp.irk"), "--emit=dot"],
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("digraph")
    assert 'label="func @predict"' in got.stdout and 'label="func @loss"' in got.stdout
    assert '[label="W1\\ninput\\nfloat32(784, 500)"' in got.stdout
    if shutil.which("dot"):
        svg = subprocess.run(["dot", "-Tsvg"], input=got.stdout, capture_output=True, text=True, timeout=120)
        assert svg.returncode == 0, svg.stderr
        ET.fromstring(svg.stdout)


def test_without_dot_an_svg_is_a_clear_error_and_dot_text_still_works(tmp_path, monkeypatch):
    x = ik.vector("x")
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz on it
    with pytest.raises(GraphvizNotFoundError, match=r"Graphviz's `dot` program.*apt-get install graphviz.*\.dot"):
        ik.graph_svg(ik.exp(x), tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
    assert issubclass(GraphvizNotFoundError, ik.IrkitError)
    ik.graph_svg(ik.exp(x), tmp_path / "g.dot")
    ik.graph_svg(ik.exp(x), tmp_path / "g.gv")
    assert (tmp_path / "g.dot").read_text() == (tmp_path / "g.gv").read_text() == to_dot(ik.exp(x))
    assert 'label="ik.exp\\nfloat64(?,)"' in (tmp_path / "g.dot").read_text()


def test_what_cannot_be_drawn_is_refused(tmp_path):
    with pytest.raises(TypeError, match="draws a compiled function, a variable or a list of variables"):
        to_dot(np.ones(3))
    with pytest.raises(ValueError, match="no suffix"):
        ik.graph_svg(ik.exp(ik.vector("x")), tmp_path / "picture")
