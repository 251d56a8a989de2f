"""Python envs (PettingZoo parallel and turn-based, Gymnasium with Tuple spaces), run in E
copies, as one batched `MultiAgentEnv`.

Such an env speaks in per-agent Python dicts; the trainer wants
fixed-shape tensors over all copies and agents. Three layers bridge the two:

* `layout` reads one probe copy once: agent slots, padded observation width,
  how each agent's action space maps onto the policy's logits or box
  dimensions (`static_mask`, `mask_index`, bounds), where the global state
  comes from and how long an episode lasts. The result, `PettingZooLayout`,
  is picklable, so worker processes build their copies without probing again.
* `batch` owns k copies and turns each step into fixed-shape arrays (obs,
  reward, flags, masks, final obs; state and final state where the env has
  its own, else the consumer flattens the observations), padding observations,
  sending actions only to live agents and resetting finished copies itself.
  It is a `gymnasium.Env`, which is what lets it run in a worker process.
  What a copy raises becomes one `EnvError` line; `pickled_state` snapshots
  the copies for `--resume`.
* `wrapper` is the `MultiAgentEnv` the trainer sees: one batch of all E copies
  in this process, or W batches in gymnasium's `AsyncVectorEnv` over shared
  memory; the arrays become torch tensors once per step.

Only PettingZoo's parallel API is read (`inspect_parallel_env` and
`PettingZooBatch._step_copy`/`_read_obs`). Other kinds of env are shown
through it rather than given a probe of their own: `gymnasium_tuple` presents
a Gymnasium env whose spaces are Tuples over agents (lbforaging, rware,
EPyMARL's envs) as a parallel env, and `aec` a turn-based PettingZoo
`AECEnv` as a parallel env in which only the agent to act observes (the
wrapper adapts AEC copies itself), so layout, batch and wrapper serve them
unchanged but for one flag, `turn_based`: agents waiting for their turn keep
their rewards and flags.
"""
