"""PettingZoo image envs with SuperSuit's usual preprocessing, for `--env module:callable`.

    pip install 'mappo[images]'   # supersuit and pettingzoo[butterfly]
    PYTHONPATH=examples mappo train --env image_env:pistonball --use-global-state false

The usual Atari-style preprocessing keeps one colour channel (the blue one),
shrinks each frame to 84x84 and stacks the last 4 frames, so that speed and
direction can be read: observations become uint8 Boxes of shape (84, 84, 4),
which mappo reads as channels-last images and encodes with its CNN. The envs'
own `state()` stays the full RGB screen; with `--use-global-state false` the
critic reads the agents' preprocessed frames instead.

cooperative_pong_v6 (pettingzoo 1.27) draws its screen only in `render()`,
which does nothing without a render mode, so its observations are black
frames unless something renders every step: it is here for throughput
figures (the cost of a frame does not depend on what it shows), not to learn.
"""

from typing import Any


def _preprocessed(env: Any) -> Any:
    """Blue channel, 84x84, the last 4 frames stacked: uint8 (84, 84, 4) per agent."""
    import supersuit

    env = supersuit.color_reduction_v0(env, mode="B")  # (H, W, 3) -> (H, W)
    env = supersuit.resize_v1(env, 84, 84)  # -> (84, 84)
    return supersuit.frame_stack_v1(env, 4)  # -> (84, 84, 4)


def pistonball(**env_kwargs: Any) -> Any:
    """pistonball_v6 with discrete moves (down, stay, up) unless told otherwise, preprocessed."""
    from pettingzoo.butterfly import pistonball_v6

    return _preprocessed(pistonball_v6.parallel_env(**{"continuous": False, **env_kwargs}))


def cooperative_pong(**env_kwargs: Any) -> Any:
    """cooperative_pong_v6, preprocessed (black frames: see the module's docstring)."""
    from pettingzoo.butterfly import cooperative_pong_v6

    return _preprocessed(cooperative_pong_v6.parallel_env(**env_kwargs))
