"""Packaging: a torch range, PettingZoo and EPyMARL envs as extras, a clear line when missing."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import mappo.envs.pettingzoo
from mappo.config import ConfigError
from mappo.envs.registry import make_env

ROOT = Path(__file__).resolve().parent.parent


def requirements(names: list[str]) -> dict[str, Requirement]:
    """Requirement strings by package name."""
    parsed = [Requirement(text) for text in names]
    return {r.name: r for r in parsed}


def test_torch_is_a_range_and_pettingzoo_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = requirements(project["dependencies"])
    torch_range = core["torch"].specifier
    assert torch_range.contains("2.13.0") and torch_range.contains("2.4.0")
    assert not torch_range.contains("2.3.1") and not torch_range.contains("3.0.0")
    extras = project["optional-dependencies"]
    assert sorted(requirements(extras["pettingzoo"])) == ["gymnasium", "pettingzoo"]
    epymarl_envs = requirements(extras["epymarl-envs"])
    assert sorted(epymarl_envs) == ["lbforaging", "mappo", "rware"]
    assert epymarl_envs["mappo"].extras == {"pettingzoo"}
    for group in (core, requirements(extras["dev"])):
        assert not {"pettingzoo", "gymnasium"} & set(group)
    assert project["license"] == "MIT"
    assert 'pip install --quiet -e ".[dev,pettingzoo]"' in (ROOT / "Makefile").read_text()


def test_import_mappo_needs_no_pettingzoo() -> None:
    code = (
        "import sys, mappo\n"
        "assert 'pettingzoo' not in sys.modules and 'gymnasium' not in sys.modules\n"
        "from mappo import *\n"
        "assert 'pettingzoo' not in sys.modules and 'gymnasium' not in sys.modules\n"
        "print(mappo.PettingZooWrapper.__module__, 'PettingZooWrapper' in mappo.__all__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mappo.envs.pettingzoo.wrapper", "False"]


class Uninstalled:
    """A meta path finder for which `package` and its modules are not installed."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name: str, path=None, target=None) -> None:
        if name.partition(".")[0] == self.package:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ("mpe2.simple_spread_v3:parallel_env", "PettingZoo"),
        ("gymnasium:gym_envs:TupleCounter-v0", "Gymnasium"),
    ],
)
@pytest.mark.parametrize("missing", ["pettingzoo", "gymnasium"])
def test_missing_extra_names_the_pip_command(missing, env, kind, monkeypatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [Uninstalled(missing), *sys.meta_path])
    # Forget what is imported, so the imports run again (all restored after the test).
    monkeypatch.setattr(mappo.envs, "pettingzoo", mappo.envs.pettingzoo)
    for name in list(sys.modules):
        if name.partition(".")[0] == missing or name.startswith("mappo.envs.pettingzoo"):
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigError) as info:
        make_env(env, 2)
    assert str(info.value) == (
        f"env '{env}' is a {kind} env and needs the pettingzoo extra: "
        "pip install 'mappo[pettingzoo]'"
    )


def test_missing_lbforaging_names_the_pip_command(monkeypatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [Uninstalled("lbforaging"), *sys.meta_path])
    for name in list(sys.modules):
        if name.partition(".")[0] == "lbforaging":
            monkeypatch.delitem(sys.modules, name)
    env = "gymnasium:lbforaging:Foraging-8x8-2p-2f-coop-v3"
    with pytest.raises(ConfigError) as info:
        make_env(env, 2)
    assert str(info.value) == (
        f"env '{env}': cannot import module 'lbforaging' (No module named 'lbforaging'); "
        "pip install 'mappo[epymarl-envs]'"
    )


def test_missing_vmas_names_the_pip_command(monkeypatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [Uninstalled("vmas"), *sys.meta_path])
    for name in list(sys.modules):
        if name.partition(".")[0] == "vmas":
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigError) as info:
        make_env("vmas:balance", 2)
    assert str(info.value) == "env 'vmas:balance' needs VMAS: pip install 'mappo[vmas]'"


def test_missing_extra_for_the_wrapper_and_render_is_one_line(monkeypatch, tmp_path) -> None:
    from mappo.render import render_run

    # A PettingZoo run, saved while the extra is installed.
    trainer = mappo.MappoTrainer(
        mappo.MappoConfig(
            env="mpe2.simple_spread_v3:parallel_env", num_envs=1, minibatch_size=0, compile="false"
        )
    )
    from mappo.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    trainer.env.close()
    monkeypatch.setattr(sys, "meta_path", [Uninstalled("gymnasium"), *sys.meta_path])
    monkeypatch.setattr(mappo.envs, "pettingzoo", mappo.envs.pettingzoo)
    for name in list(sys.modules):
        if name.partition(".")[0] in ("gymnasium", "pettingzoo", "mpe2") or name.startswith(
            "mappo.envs.pettingzoo"
        ):
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(
        ImportError,
        match=r"^mappo.PettingZooWrapper needs the pettingzoo "
        r"extra: pip install 'mappo\[pettingzoo\]'$",
    ):
        mappo.PettingZooWrapper  # noqa: B018 - the attribute access is the test
    with pytest.raises(ConfigError, match="is a PettingZoo env and needs the pettingzoo extra"):
        render_run(tmp_path, tmp_path / "out.gif", episodes=1)
