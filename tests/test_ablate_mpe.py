"""`benchmarks/ablate_mpe.py`: a variant whose training stops short is an error, not a score."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_script

from mappo.run import RunSummary


def test_a_variant_stopped_short_is_refused(tmp_path, monkeypatch) -> None:
    ablate = load_script("ablate_mpe")
    stopped = RunSummary(3200, False, [float("nan")], [tmp_path / "seed_0"], "SIGINT")
    monkeypatch.setattr(ablate, "train", lambda *args, **kwargs: (stopped, 0))
    monkeypatch.setattr(ablate, "score", lambda *args: pytest.fail("scored a stopped run"))
    with pytest.raises(ablate.UsageError, match="training stopped before 200 env steps"):
        ablate.run_variant("paper-mpe", {}, [0], 1e-5, 2, tmp_path)
