"""scripts/compile_cpu_bench.py: eager and compiled rollouts timed side by side, JSON written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "compile_cpu_bench", REPO / "scripts/compile_cpu_bench.py"
)
compile_cpu_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compile_cpu_bench)


def test_times_eager_and_compiled_on_the_tiny_model(tmp_path, capsys) -> None:
    out = tmp_path / "compile.json"
    argv = ["--preset", "tiny", "--rounds", "2", "--json", str(out)]
    assert compile_cpu_bench.main(argv) == 0
    row = json.loads(out.read_text())
    assert row["preset"] == "tiny" and row["threads"] == 1 and row["rounds"] == 2
    assert row["eager_s"] > 0 and row["compiled_s"] > 0 and row["build_s"] > 0
    assert row["ratio"] == row["compiled_s"] / row["eager_s"]
    assert "compiled" in capsys.readouterr().out
    assert compile_cpu_bench.main(["--rounds", "0"]) == 2
