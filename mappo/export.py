"""Ship the actors alone: one TorchScript (and ONNX) file per policy, plus `layout.json`.

Each file holds one policy (the shared one, one agent's, or one group's) as a
module mapping observations `[B, obs_dim]` to greedy actions: the argmax of
each sub-action's masked logits (`[B, n_sub]` int64), or the Gaussian mean
clipped to the agent's bounds (`[B, D]` float32). A policy serving several
agents takes the agent slot index `[B]` of each row, because the agent one-hot
is part of its first layer. The math repeats `Actor.forward` and
`ActionDistribution.mode` operation for operation, so the actions equal
`Policy.act(..., deterministic=True)` exactly.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mappo.config import ConfigError, MappoConfig
from mappo.envs.base import ActionSpec, MultiAgentEnv
from mappo.envs.registry import make_env
from mappo.networks import Actor
from mappo.policy import Policy, load_policy

LAYOUT_FORMAT = "mappo-actors"
LAYOUT_VERSION = 1
ONNX_OPSET = 17


class ExportError(ConfigError):
    """A trained actor that cannot be exported; a ConfigError, so the CLI reports it plainly."""


class GreedyPolicy(nn.Module):
    """One policy of a trained `Actor`, standalone: observations → greedy actions.

    `forward(obs, agent=None, mask=None)`:

    * `obs` `[B, obs_dim]` float32 (rows of an agent with a smaller
      observation may also come unpadded, `[B, obs_size]`);
    * `agent` `[B]` int64 agent slot indices, all served by this policy; may be
      None when the policy serves a single agent;
    * `mask` `[B, K]` bool, True for legal logits (discrete actions only).
    """

    def __init__(self, actor: Actor, group: int, spec: ActionSpec, static_mask: np.ndarray,
                 low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        if getattr(actor, "gru", None) is not None:
            raise ExportError("recurrent actors cannot be exported yet: their greedy action "
                              "depends on a hidden state the exported module does not carry")
        group_of_agent = actor.group_of_agent.tolist()
        agents = [a for a, g in enumerate(group_of_agent) if g == group]
        num_groups = actor.fc1.weight.shape[0]
        self.obs_dim = int(actor.fc1.weight.shape[1])
        self.discrete = spec.kind == "discrete"
        self.nvec = list(spec.nvec) if self.discrete else [0]
        self.default_agent = agents[0] if len(agents) == 1 else -1
        # GroupedLinear adds the bias after matmul for one group and fuses it (baddbmm) for
        # several; repeating that keeps the logits, and so every argmax, bit for bit.
        self.fused_bias = num_groups > 1
        self.use_agent_id = bool(actor.use_agent_id)
        self.relu = isinstance(actor.act, nn.ReLU)
        self.neg = float(torch.finfo(torch.float32).min)  # what ActionDistribution masks with

        def weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
            return layer.weight[group].detach().clone(), layer.bias[group].detach().clone()

        norm = getattr(actor, "input_norm", None)
        self.input_norm = norm is not None
        if norm is not None:
            weight, bias = weights(norm)
        else:
            weight, bias = torch.ones(self.obs_dim), torch.zeros(self.obs_dim)
        self.register_buffer("norm_weight", weight)
        self.register_buffer("norm_bias", bias)
        # LayerNorms after the two hidden layers (`hidden_layer_norm`), `[2, H]` each.
        hidden_norms = list(getattr(actor, "hidden_norms", []))
        self.hidden_norm = bool(hidden_norms)
        hidden = self.hidden_dim = int(actor.fc2.weight.shape[-1])
        if hidden_norms:
            pairs = [weights(n) for n in hidden_norms[:2]]
            weight, bias = torch.stack([w for w, _ in pairs]), torch.stack([b for _, b in pairs])
        else:
            weight, bias = torch.ones(2, hidden), torch.zeros(2, hidden)
        self.register_buffer("hidden_norm_weight", weight)
        self.register_buffer("hidden_norm_bias", bias)
        for name in ("fc1", "fc2", "head"):
            weight, bias = weights(getattr(actor, name))
            self.register_buffer(f"{name}_weight", weight)
            self.register_buffer(f"{name}_bias", bias)
        # Row a: agent a's one-hot row of this group's first layer (zeros if not used).
        id_rows = actor.agent_id_weight.detach()[group].clone()
        if not self.use_agent_id:
            id_rows.zero_()
        self.register_buffer("agent_rows", id_rows)  # [A, H]
        served = torch.zeros(len(group_of_agent), dtype=torch.bool)
        served[agents] = True
        self.register_buffer("served", served)  # [A]
        # np.array copies: the env's arrays may be read-only views.
        self.register_buffer("static_mask", torch.from_numpy(np.array(static_mask, np.bool_)))
        self.register_buffer("low", torch.from_numpy(np.array(low, np.float32)))  # [A, D]
        self.register_buffer("high", torch.from_numpy(np.array(high, np.float32)))  # [A, D]

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.fused_bias:
            return torch.addmm(bias, x, weight)
        return torch.matmul(x, weight) + bias

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.relu else torch.tanh(x)

    def _layer_norm(self, x: torch.Tensor, size: int, weight: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
        # GroupedLayerNorm's two forms, kept apart for the same reason as the biases.
        if self.fused_bias:
            return nn.functional.layer_norm(x, [size]) * weight + bias
        return nn.functional.layer_norm(x, [size], weight, bias)

    def _hidden(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """A hidden layer's activation, then its LayerNorm when the actor has them."""
        x = self._activation(x)
        if self.hidden_norm:
            x = self._layer_norm(x, self.hidden_dim, self.hidden_norm_weight[index],
                                 self.hidden_norm_bias[index])
        return x

    def act(self, obs: torch.Tensor, agent: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        """Greedy actions of checked inputs: obs `[B, obs_dim]`, agent `[B]`, legal `[B, K]`."""
        if self.input_norm:
            obs = self._layer_norm(obs, self.obs_dim, self.norm_weight, self.norm_bias)
        x = self._linear(obs, self.fc1_weight, self.fc1_bias)
        if self.use_agent_id:
            x = x + self.agent_rows[agent]
        x = self._hidden(x, 0)
        x = self._hidden(self._linear(x, self.fc2_weight, self.fc2_bias), 1)
        params = self._linear(x, self.head_weight, self.head_bias)
        if not self.discrete:
            return torch.clamp(params, self.low[agent], self.high[agent])
        logits = params.masked_fill(~legal, self.neg)
        if len(self.nvec) == 1:
            return logits.log_softmax(-1).argmax(-1, keepdim=True)
        heads = [block.log_softmax(-1).argmax(-1) for block in torch.split(logits, self.nvec, -1)]
        return torch.stack(heads, -1)

    def forward(self, obs: torch.Tensor, agent: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy actions for observations `[B, obs_dim]` of the agents `agent` `[B]`."""
        if obs.dim() != 2 or obs.shape[1] > self.obs_dim:
            raise ValueError(f"obs must be [B, <= {self.obs_dim}], got {list(obs.shape)}")
        if obs.shape[1] < self.obs_dim:  # an agent with a smaller observation, unpadded
            obs = nn.functional.pad(obs, [0, self.obs_dim - obs.shape[1]])
        if agent is None:
            if self.default_agent < 0:
                raise ValueError("this policy serves several agents: pass agent indices [B]")
            agent = torch.full([obs.shape[0]], self.default_agent, dtype=torch.long,
                               device=obs.device)
        elif agent.dim() == 0:
            agent = agent.expand(obs.shape[0])
        if bool((agent < 0).any()) or bool((agent >= self.served.shape[0]).any()) \
                or not bool(self.served[agent].all()):
            raise ValueError("agent index not served by this policy (see layout.json)")
        legal = self.static_mask[agent]
        if mask is not None:
            legal = legal & mask
        return self.act(obs, agent, legal)


class _OnnxPolicy(nn.Module):
    """`GreedyPolicy` with every input required, as the ONNX graph takes them."""

    def __init__(self, policy: GreedyPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, agent: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        legal = self.policy.static_mask[agent]
        if mask is not None:
            legal = legal & mask
        return self.policy.act(obs, agent, legal)


# ---------------------------------------------------------------------- layout


def _finite_or_none(values: Any) -> list[float | None]:
    """Bounds for JSON, which has no infinity: None where unbounded."""
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values).ravel()]


def _is_pettingzoo(env: Any) -> bool:
    """Whether `env` wraps PettingZoo copies (whose layout holds per-agent spaces)."""
    try:
        from mappo.envs.thirdparty.wrapper import PettingZooWrapper
    except ImportError:  # pettingzoo not installed: no env can be one
        return False
    return isinstance(env, PettingZooWrapper)


def _env_layout(env: MultiAgentEnv) -> dict[str, Any]:
    """Static mask `[A, K]`, bounds `[A, D]`, mask targets and action spaces of each agent."""
    spec = env.spec
    A, action = spec.num_agents, spec.action
    if _is_pettingzoo(env):
        layout = env.layout
        return {
            "static_mask": layout.static_mask, "low": layout.low, "high": layout.high,
            "mask_index": [index.tolist() for index in layout.mask_index],
            "spaces": [_space_json(space) for space in layout.action_spaces],
            # Dict observations are how a PettingZoo env hands out an action_mask.
            "has_mask": any(layout.dict_obs) or not bool(layout.static_mask.all()),
        }
    # A built-in env: its masks are constant (the slots of actions an agent lacks), so the
    # mask at reset is every step's.
    static_mask = env.get_action_mask()[0].cpu().numpy().astype(np.bool_)  # [A, K]
    D = action.action_dim if action.kind == "continuous" else 0
    if action.kind == "discrete":
        starts = np.cumsum([0, *action.nvec[:-1]])
        spaces_json = [
            {"kind": "discrete", "start": [0] * len(action.nvec),
             "nvec": [int(row[a : a + n].sum())
                      for a, n in zip(starts, action.nvec, strict=True)]}
            for row in static_mask
        ]
    else:
        spaces_json = [{"kind": "continuous", "shape": [D], "low": _finite_or_none(action.low),
                        "high": _finite_or_none(action.high)}] * A
    return {
        "static_mask": static_mask,
        "low": np.broadcast_to(np.asarray(action.low, np.float32), (A, D)),
        "high": np.broadcast_to(np.asarray(action.high, np.float32), (A, D)),
        "mask_index": [np.flatnonzero(row).tolist() for row in static_mask],
        "spaces": spaces_json, "has_mask": not bool(static_mask.all()),
    }


def _space_json(space: Any) -> dict[str, Any]:
    """One agent's own gymnasium action space, as layout.json describes it."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return {"kind": "discrete", "nvec": [int(space.n)], "start": [int(space.start)]}
    if isinstance(space, spaces.MultiDiscrete):
        return {"kind": "discrete", "nvec": space.nvec.ravel().tolist(),
                "start": np.asarray(space.start).ravel().tolist()}
    return {"kind": "continuous", "shape": list(space.shape),
            "low": _finite_or_none(space.low), "high": _finite_or_none(space.high)}


def policy_file_stems(agent_names: tuple[str, ...], group_of_agent: list[int],
                      prefixes: str) -> list[str]:
    """A file name (no suffix) per policy group: `policy`, an agent's name, or its prefix."""
    stems = []
    prefix_list = [p.strip() for p in prefixes.split(",") if p.strip()]
    for g in range(max(group_of_agent) + 1):
        members = [name for name, gg in zip(agent_names, group_of_agent, strict=True) if gg == g]
        if len(members) == len(agent_names):
            stem = "policy"
        elif len(members) == 1:
            stem = members[0]
        else:
            stem = next((p for p in prefix_list if members[0].startswith(p)), f"policy_{g}")
        stem = re.sub(r"[^\w.-]+", "_", stem).strip("._") or f"policy_{g}"
        stems.append(stem if stem not in stems else f"{stem}_{g}")
    return stems


# ---------------------------------------------------------------------- export


def onnx_available() -> bool:
    """Whether the `onnx` package imports, so ONNX files can be written."""
    return importlib.util.find_spec("onnx") is not None


def _write_onnx(policy: GreedyPolicy, path: Path, discrete: bool) -> list[str]:
    """Trace `policy` into an ONNX file with a dynamic batch axis; the graph's input names."""
    import onnx

    B = 2
    obs = torch.zeros(B, policy.obs_dim)
    agent = policy.served.nonzero()[0].expand(B).contiguous()
    args: tuple[torch.Tensor, ...] = (obs, agent)
    names = ["obs", "agent"]
    if discrete:
        args += (torch.ones(B, policy.static_mask.shape[1], dtype=torch.bool),)
        names.append("mask")
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated, but needs no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _OnnxPolicy(policy).eval(), args, str(path), input_names=names,
            output_names=["action"], opset_version=ONNX_OPSET, dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in [*names, "action"]},
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    return [i.name for i in model.graph.input]


def export_policy(policy: Policy, env: MultiAgentEnv, out_dir: str | Path,
                  onnx: bool | None = None) -> dict[str, Any]:
    """Write every actor of `policy`, which acts in `env`, to `out_dir` with `layout.json`;
    return the layout.

    `onnx=None` writes ONNX files when the `onnx` package imports.
    """
    if onnx is None:
        onnx = onnx_available()
    spec, cfg = env.spec, policy.config
    actor = policy.actor
    env_layout = _env_layout(env)
    group_of_agent = actor.group_of_agent.tolist()
    stems = policy_file_stems(spec.agent_names, group_of_agent, cfg.policy_groups)
    actor_cpu = copy.deepcopy(actor).cpu()
    # Every policy is built (and so checked) before anything is written.
    greedy = [GreedyPolicy(actor_cpu, g, spec.action, env_layout["static_mask"],
                           env_layout["low"], env_layout["high"]).eval()
              for g in range(len(stems))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policies, file_of_agent = [], {}
    for g, (stem, policy) in enumerate(zip(stems, greedy, strict=True)):
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated; it is still what loads with
            # nothing but `torch.jit.load` (and from C++ via libtorch).
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.script(policy), str(out_dir / f"{stem}.pt"))
        agents = [a for a, gg in enumerate(group_of_agent) if gg == g]
        entry: dict[str, Any] = {
            "file": f"{stem}.pt", "agents": agents,
            "agent_names": [spec.agent_names[a] for a in agents],
            "needs_agent_index": len(agents) > 1,
        }
        if onnx:
            entry["onnx"] = f"{stem}.onnx"
            entry["onnx_inputs"] = _write_onnx(policy, out_dir / f"{stem}.onnx",
                                               spec.action.kind == "discrete")
        policies.append(entry)
        file_of_agent.update({a: entry["file"] for a in agents})
    action = spec.action
    layout = {
        "format": LAYOUT_FORMAT, "version": LAYOUT_VERSION,
        "env": cfg.env, "env_kwargs": cfg.env_kwargs,
        "obs_dim": spec.obs_dim,
        "action": {
            "kind": action.kind,
            "logits_dim": action.logits_dim,
            **({"nvec": list(action.nvec)} if action.kind == "discrete"
               else {"dim": action.action_dim}),
            "output": ("[B, n_sub] int64: the index of each sub-action, 0-based (add the "
                       "agent's start)" if action.kind == "discrete"
                       else "[B, D] float32: the mean, clipped to the agent's bounds"),
        },
        "has_action_mask": bool(env_layout["has_mask"]),
        "inputs": {
            "obs": "[B, obs_dim] float32; an agent's own obs_size floats, zero-padded",
            "agent": "[B] int64 agent slot index; optional when the file serves one agent",
            "mask": "[B, logits_dim] bool, optional: True = legal logit; an agent's own "
                    "action_mask goes at its mask_index",
        },
        "policies": policies,
        "agents": [
            {"index": a, "name": name, "policy_file": file_of_agent[a],
             "obs_size": int(spec.obs_sizes[a]) if spec.obs_sizes else spec.obs_dim,
             "action_space": env_layout["spaces"][a], "mask_index": env_layout["mask_index"][a]}
            for a, name in enumerate(spec.agent_names)
        ],
    }
    (out_dir / "layout.json").write_text(json.dumps(layout, indent=2) + "\n")
    return layout


def export_run(run_dir: str | Path, out_dir: str | Path,
               onnx: bool | None = None) -> dict[str, Any]:
    """Load the run in `run_dir` (its policy, one env copy, on CPU) and export its actors to
    `out_dir`; no trainer is built and the env's global state is never asked for."""

    def one_copy(config: MappoConfig) -> MultiAgentEnv:
        return make_env(config.env, 1, "cpu", env_kwargs=config.env_kwargs, use_state=False)

    policy, env = load_policy(Path(run_dir) / "checkpoint.pt", one_copy, device="cpu")
    try:
        return export_policy(policy, env, out_dir, onnx)
    finally:
        env.close()
