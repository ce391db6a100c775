"""The house's layers: the compiler core never imports the auto-scheduler or the LLM proposer at
module level, the only top-level package is ``minicompiler``, and einsum finds tuned schedules
through a source the auto-scheduler registers."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import minicompiler as mc

ROOT = Path(__file__).resolve().parent.parent
UPPER = ("minicompiler.search", "minicompiler.llm")


def _module_level_imports(path: Path) -> list[str]:
    """Absolute names imported by the statements at the top level of a module (not inside functions)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: -node.level]
                base = ".".join(parts + ([node.module] if node.module else []))
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    return names


def test_the_core_imports_neither_the_search_nor_the_llm_at_module_level() -> None:
    core = [p for p in (ROOT / "minicompiler").rglob("*.py")
            if not {"search", "llm"} & set(p.relative_to(ROOT / "minicompiler").parts)]
    assert len(core) > 20
    offenders = {str(p.relative_to(ROOT)): n for p in core for n in _module_level_imports(p)
                 if n.startswith(UPPER)}
    assert offenders == {}


def test_the_search_does_not_import_the_llm_at_module_level() -> None:
    offenders = {str(p.relative_to(ROOT)): n for p in (ROOT / "minicompiler" / "search").rglob("*.py")
                 for n in _module_level_imports(p) if n.startswith("minicompiler.llm")}
    assert offenders == {}


def test_only_minicompiler_is_a_top_level_package(tmp_path: Path) -> None:
    assert 'include = ["minicompiler*"]' in (ROOT / "pyproject.toml").read_text()
    assert not (ROOT / "search").exists() and not (ROOT / "llm").exists()
    # A user's own search.py / llm.py beside their script shadows nothing of ours.
    (tmp_path / "search.py").write_text("raise ImportError('the user search.py was imported')\n")
    (tmp_path / "llm.py").write_text("raise ImportError('the user llm.py was imported')\n")
    code = ("import numpy as np, minicompiler as mc, minicompiler.search, minicompiler.llm\n"
            "a = np.ones((8, 4), 'float32'); b = np.ones((4, 16), 'float32')\n"
            "print(float(mc.einsum('ik,kj->ij', a, b).sum()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "512.0", out.stderr[-2000:]


def test_einsum_asks_the_registered_schedule_sources(monkeypatch) -> None:  # noqa: ANN001
    import numpy as np
    from minicompiler.frontend import einsum as einsum_module
    from minicompiler.schedule import sources
    asked = []

    def source(tensor, inputs):  # noqa: ANN001, ANN202 - a source that offers a split, and records the call
        asked.append(tensor.shape)
        return mc.Schedule(tensor, inputs).split(mc.Schedule(tensor, inputs).loops[-1], 3)

    monkeypatch.setattr(sources, "_sources", [source])
    monkeypatch.setattr(einsum_module, "_plans", {})
    monkeypatch.setattr(einsum_module, "_kernels", {})
    a = np.random.default_rng(0).standard_normal((5, 7)).astype("float32")
    b = np.random.default_rng(1).standard_normal((7, 11)).astype("float32")
    np.testing.assert_allclose(mc.einsum("ik,kj->ij", a, b), a @ b, rtol=1e-5, atol=1e-5)
    assert asked == [(5, 11)]
