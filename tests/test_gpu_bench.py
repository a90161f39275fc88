"""``scripts/gpu_bench.sh`` runs end to end on a CPU with the tiny model (so it works the day a
GPU is there), its table lands in the doc between markers (replaced, not appended, on a rerun),
bad requests are one line, and a compiled rollout (padded batches) equals the eager one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import world_model
from planner.bench_gpu import BEGIN, END, main, update_doc

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_bench.sh"


def run_script(*args: str) -> subprocess.CompletedProcess:
    command = ["bash", str(SCRIPT), *args]
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_gpu_bench_runs_end_to_end_on_cpu_with_the_tiny_model(tmp_path):
    doc = tmp_path / "benchmark.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    out = tmp_path / "gpu.json"
    tiny = ["--device", "cpu", "--model", "tiny", "--json", str(out), "--doc", str(doc)]
    search = ["actor.samples=24", "actor.iterations=2", "actor.elites=4"]
    result = run_script(*tiny, "--repeats", "1", "--modes", "eager", *search)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    cases = {(row["preset"], row["dtype"], row["mode"]) for row in report["rows"]}
    presets = ("cem_paper", "cem_release", "icem", "fast", "fast_path")
    assert cases == {(p, d, "eager") for p in presets for d in ("bf16", "fp32")}
    assert all(row["status"] == "ok" and row["median_s"] > 0 for row in report["rows"])
    fast = {(row["preset"], row["dtype"]): row for row in report["rows"] if "fast" in row["preset"]}
    assert all(row["fallbacks"] >= 0 and row["evaluations"] > 0 for row in fast.values())
    assert fast["fast_path", "fp32"]["fallbacks"] == 0  # no probes: never the full search
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n") and text.count(BEGIN) == 1
    table = text.split(BEGIN)[1].split(END)[0]
    assert table.count("| ok |") == 10 and "gpu_bench.sh --device cpu" in table


def test_doc_table_is_replaced_between_the_markers(tmp_path):
    doc = tmp_path / "benchmark.md"
    doc.write_text(f"head\n{BEGIN}\nold table\n{END}\ntail\n")
    update_doc(doc, "new table")
    update_doc(doc, "newer table")
    assert doc.read_text() == f"head\n{BEGIN}\nnewer table\n{END}\ntail\n"


def test_bad_requests_are_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--presets takes cem_paper.*'cem_paper,warp'"):
        main(["--device", "cpu", "--presets", "cem_paper,warp", "--doc", ""])
    if not torch.cuda.is_available():
        assert main(["--device", "cuda", "--json", str(tmp_path / "x.json"), "--doc", ""]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("scripts/gpu_bench.sh: error: no CUDA device") and "\n" not in error
        assert not (tmp_path / "x.json").exists()


def test_a_compiled_rollout_pads_batches_and_matches_eager():
    model = world_model.build("tiny", seed=0)
    latent = torch.randn(5, model.num_patches, model.latent_dim)
    state = torch.zeros(1, 7)
    actions = 0.02 * torch.randn(5, 2, 7)
    expected = model.rollout(latent, state, actions)
    model.compile_rollout(backend="eager")  # dynamo's tracing and the padding; no C++ build
    compiled = model.rollout(latent, state, actions)  # 5 sequences run as a batch of 8
    assert compiled.shape == expected.shape == (5, 2, model.num_patches, model.latent_dim)
    assert torch.allclose(compiled, expected, atol=1e-5)
