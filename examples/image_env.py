"""A PettingZoo image env with SuperSuit's usual preprocessing, for `--env module:callable`.

    pip install 'mappo[images]'   # supersuit and pettingzoo[butterfly]
    PYTHONPATH=examples mappo train --env image_env:cooperative_pong --use-global-state false

Each paddle of `cooperative_pong_v6` sees the whole 280x480 RGB screen. The
usual Atari-style preprocessing keeps one colour channel (the blue one, where
ball and paddles show), shrinks the frame to 84x84 and stacks the last 4
frames, so that speed and direction can be read: observations become uint8
Boxes of shape (84, 84, 4), which mappo reads as channels-last images and
encodes with its CNN. The env's own `state()` stays the full RGB screen; with
`--use-global-state false` the critic reads the agents' preprocessed frames instead.
"""

from typing import Any


def cooperative_pong(**env_kwargs: Any) -> Any:
    """One copy of cooperative_pong_v6, grayscale (blue channel), 84x84, 4 frames stacked."""
    import supersuit
    from pettingzoo.butterfly import cooperative_pong_v6

    env = cooperative_pong_v6.parallel_env(**env_kwargs)
    env = supersuit.color_reduction_v0(env, mode="B")  # (280, 480, 3) -> (280, 480)
    env = supersuit.resize_v1(env, 84, 84)  # -> (84, 84)
    return supersuit.frame_stack_v1(env, 4)  # -> (84, 84, 4), the last 4 frames
