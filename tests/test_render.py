"""`mappo eval --render`: envs draw themselves (spread where its agents are), GIFs written and
read back, envs that do not draw refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.checkpoint import save_checkpoint
from mappo.cli import main
from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentEnv, MultiAgentStepResult
from mappo.envs.mpe.drawing import (
    LANDMARK_RGB,
    SpreadEpisode,
    SpreadPainter,
    agent_color,
    episode_extent,
    spread_frames,
    spread_palette,
    spread_positions,
)
from mappo.envs.mpe.spread import AGENT_SIZE, SpreadEnv
from mappo.envs.registry import make_env
from mappo.errors import RenderError
from mappo.evaluation import evaluate, play
from mappo.policy import Policy
from mappo.render import (
    HOLD_FRAMES,
    exact_palette,
    fit,
    render_run,
    run_episodes,
    shared_palette,
    write_video,
)

WHITE = (255, 255, 255)
AGENTS = [[-0.5, 0.5], [0.5, 0.5], [0.0, -0.5]]
LANDMARKS = [[-0.5, -0.5], [0.5, -0.5], [0.8, 0.8]]
MOVED = [[-0.2, 0.5], [0.5, 0.5], [0.0, -0.5]]  # agent 0 went 0.3 to the right
SIZE = 240


def _known_episode() -> SpreadEpisode:
    """Two states placed with `set_state`, read back through the env's observations."""
    env = SpreadEnv(num_envs=1, seed=0)
    states = []
    for agents in (AGENTS, MOVED):
        obs = env.set_state(torch.tensor([agents]), torch.tensor([LANDMARKS]))
        states.append(spread_positions(obs[0], env.num_agents))
    return SpreadEpisode(np.stack([a for a, _ in states]), states[0][1], AGENT_SIZE)


def _pixel(painter: SpreadPainter, rgb: np.ndarray, xy: list[float]) -> tuple[int, ...]:
    col, row = painter.to_pixel(np.asarray(xy, np.float64)).astype(int)
    return tuple(int(c) for c in rgb[row, col])


def test_positions_read_back_from_observations() -> None:
    episode = _known_episode()
    np.testing.assert_allclose(episode.agents[0], AGENTS, atol=1e-6)
    np.testing.assert_allclose(episode.agents[1], MOVED, atol=1e-6)
    np.testing.assert_allclose(episode.landmarks, LANDMARKS, atol=1e-6)


def test_two_frames_show_agents_landmarks_path_and_nothing_else() -> None:
    episode = _known_episode()
    frames = spread_frames(episode, size=SIZE)
    assert len(frames) == 2 and frames[0].shape == (SIZE, SIZE)
    first, second = (spread_palette(3)[f] for f in frames)
    # The view is the spawn square plus an agent radius and a margin: 1.2 on each side.
    assert episode_extent(episode) == pytest.approx(1.0 + AGENT_SIZE + 0.05)
    painter = SpreadPainter(episode_extent(episode), SIZE)
    for a, xy in enumerate(AGENTS):
        assert _pixel(painter, first, xy) == agent_color(a)
    for xy in LANDMARKS:
        assert _pixel(painter, first, xy) == LANDMARK_RGB
        assert _pixel(painter, second, xy) == LANDMARK_RGB
    assert _pixel(painter, second, MOVED[0]) == agent_color(0)
    # Agent 0 left its first place: its path starts there, in its colour lightened.
    path = tuple((c + 255) // 2 for c in agent_color(0))
    assert _pixel(painter, second, AGENTS[0]) == path
    # A rim of half the body colour, just inside the radius; white just outside it.
    rim = tuple(c // 2 for c in agent_color(1))
    assert _pixel(painter, second, [0.5 + AGENT_SIZE - 0.01, 0.5]) == rim
    assert _pixel(painter, second, [0.5 + AGENT_SIZE + 0.02, 0.5]) == WHITE
    for empty in ([0.9, -0.9], [-1.0, 0.0], [0.0, 0.0], [-1.1, 1.1]):
        assert _pixel(painter, first, empty) == WHITE
        assert _pixel(painter, second, empty) == WHITE
    # Discs have their true radius: ~pi r^2 pixels of agent 1's body and rim.
    colored = np.isin(frames[1], [5, 6]).sum()  # agent 1's body and rim indices
    assert colored == pytest.approx(np.pi * (AGENT_SIZE * painter.scale) ** 2, rel=0.05)


def test_gif_holds_the_frames_exactly(tmp_path) -> None:
    rgb = [spread_palette(3)[frame] for frame in spread_frames(_known_episode(), size=SIZE)]
    write_video(rgb, tmp_path / "two.gif", fps=5)
    back = iio.imread(tmp_path / "two.gif", index=None)
    assert back.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(back, np.stack(rgb))


@pytest.fixture(scope="module")
def spread_trainer() -> MappoTrainer:
    return MappoTrainer(MappoConfig(num_envs=1, minibatch_size=1, seed=4, compile="false"))


def _played(policy: Policy, env: SpreadEnv, episodes: int, seed: int) -> list[SpreadEpisode]:
    """Copy 0's positions over the first `episodes` episodes the policy plays, read off the
    observations play() hands out (the final one of a finished episode included)."""
    finished: list[SpreadEpisode] = []
    for obs, result, _ in play(policy, env, deterministic=True, seed=seed):
        if result is None:
            agents, landmarks = spread_positions(obs[0], 3)
            states = [agents]
            continue
        states.append(spread_positions(result.final_obs[0], 3)[0])
        if bool(result.env_done[0]):
            finished.append(SpreadEpisode(np.stack(states), landmarks, AGENT_SIZE))
            if len(finished) == episodes:
                return finished
            agents, landmarks = spread_positions(result.obs[0], 3)
            states = [agents]
    raise AssertionError("unreachable")


def test_recorded_episodes_are_the_evaluated_ones(spread_trainer) -> None:
    policy = spread_trainer.policy
    env = SpreadEnv(num_envs=1, seed=0, record_frames=True)
    returns = run_episodes(policy, env, 2, deterministic=True, seed=11)
    expected = evaluate(policy, spread_trainer.env, 2, deterministic=True, seed=11)
    assert returns == pytest.approx(expected)
    recorded = env.rendered_episodes()
    # Built, reset by play(), two episodes of reset + 25 steps, the one the last step began.
    assert [len(frames) for frames in recorded] == [1, 26, 26, 1]
    played = _played(policy, SpreadEnv(num_envs=1, seed=0), 2, seed=11)
    for frames, episode in zip(recorded[1:3], played, strict=True):
        np.testing.assert_array_equal(np.stack(frames), spread_palette(3)[spread_frames(episode)])
    fresh = SpreadEnv(num_envs=1, seed=11)  # the same seed starts the same first episode
    agents, landmarks = spread_positions(fresh.reset(seed=11)[0], 3)
    np.testing.assert_allclose(played[0].agents[0], agents)
    np.testing.assert_allclose(played[0].landmarks, landmarks)
    assert not np.allclose(played[0].agents[-1], played[0].agents[0])


def test_spread_draws_every_episode_from_its_reset_to_its_final_state() -> None:
    T, moves = 4, torch.tensor([[1, 2, 3]])  # every agent pushed its own way
    env = SpreadEnv(num_envs=1, max_cycles=T, seed=0, record_frames=True)
    env.set_state(torch.tensor([AGENTS]), torch.tensor([LANDMARKS]))
    for _ in range(2 * T):
        env.step(moves)
    episodes = env.rendered_episodes()
    # Built, placed by set_state, two episodes of T steps, the one the last step began.
    assert [len(frames) for frames in episodes] == [1, T + 1, T + 1, 1]
    for frame in (frame for frames in episodes for frame in frames):
        assert frame.shape == (400, 400, 3) and frame.dtype == np.uint8
    placed = episodes[1]
    assert not np.array_equal(placed[0], placed[-1])  # agents moved
    # The placed episode's first frame shows its agents where they were put (they stay in the
    # spawn square over T steps, so the view is the spawn square's).
    painter = SpreadPainter(1.0 + AGENT_SIZE + 0.05, 400)
    for a, xy in enumerate(AGENTS):
        assert _pixel(painter, placed[0], xy) == agent_color(a)
    assert SpreadEnv(num_envs=1, seed=0).rendered_episodes() == []  # not built to record


def test_cli_renders_a_run_and_refuses_unknown_formats(spread_trainer, tmp_path, capsys) -> None:
    save_checkpoint(tmp_path / "checkpoint.pt", spread_trainer.state_dict())
    gif = tmp_path / "out.gif"
    assert main(["eval", str(tmp_path), "--render", str(gif), "--episodes", "2", "--json"]) == 0
    frames = iio.imread(gif, index=None)
    # 2 x 26 states; the held last frames merge into one longer GIF frame.
    assert 2 * 26 - 2 <= len(frames) <= 2 * (26 + HOLD_FRAMES)
    assert '"episodes": 2' in capsys.readouterr().out.splitlines()[-1]
    assert main(["eval", str(tmp_path), "--render", str(tmp_path / "out.avi")]) == 2
    assert "must end in .gif or .mp4" in capsys.readouterr().err


@pytest.mark.parametrize("own_render_mode", [False, True])
def test_pettingzoo_env_renders_its_own_frames(tmp_path, own_render_mode) -> None:
    """Also where the run itself sets render_mode (an env that draws its observations, as
    cooperative_pong's need): --render used to fail, render_mode given twice."""
    config = MappoConfig(
        env="mpe2.simple_spread_v3:parallel_env",
        num_envs=1,
        minibatch_size=1,
        env_kwargs={"max_cycles": 4, **({"render_mode": "rgb_array"} if own_render_mode else {})},
        compile="false",
    )
    trainer = MappoTrainer(config)
    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    trainer.env.close()
    returns = render_run(tmp_path, tmp_path / "pz.gif", episodes=2, seed=3).returns
    assert len(returns) == 2 and all(-40 < r < 0 for r in returns)
    frames = iio.imread(tmp_path / "pz.gif", index=None)
    assert frames.shape[1:] == (400, 400, 3)  # mpe2's 700x700 screen, shrunk
    # Reset + 4 steps per episode. MPE agents start at rest, so the first step leaves the
    # picture as it was and the GIF merges that pair; after it, agents move.
    assert len(frames) == 2 * 4
    assert not np.array_equal(frames[0], frames[1])


def test_rgb_frames_of_few_colours_are_stored_exactly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    colours = np.array([[255, 255, 255], [10, 20, 30], [200, 0, 90]], np.uint8)
    frames = [colours[rng.integers(0, 3, (16, 24))] for _ in range(3)]
    indices, palette = exact_palette(frames)
    assert len(palette) == 3
    for frame, index in zip(frames, indices, strict=True):
        np.testing.assert_array_equal(palette[index], frame)
    write_video(frames, tmp_path / "few.gif")
    np.testing.assert_array_equal(iio.imread(tmp_path / "few.gif", index=None), frames)
    # Beyond 256 colours there is no exact palette; the writer quantizes instead.
    noisy = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    assert exact_palette(noisy) is None
    write_video(noisy, tmp_path / "noisy.gif")
    assert iio.imread(tmp_path / "noisy.gif", index=None).shape == (1, 32, 32, 3)


def test_a_gif_write_stopped_midway_leaves_the_gif_there_before(tmp_path, monkeypatch) -> None:
    """A SIGTERM while `--render out.gif` was written left out.gif at 0 bytes, the GIF
    there before lost."""
    from PIL import Image

    frames = [np.full((8, 8, 3), value, np.uint8) for value in (0, 255)]
    write_video(frames, tmp_path / "out.gif")
    before = (tmp_path / "out.gif").read_bytes()

    def stopped_midway(self, handle, *args, **kwargs) -> None:
        handle.write(b"GIF89a")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", stopped_midway)
    with pytest.raises(KeyboardInterrupt):
        write_video(frames[::-1], tmp_path / "out.gif")
    assert (tmp_path / "out.gif").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.gif"]  # no temporary file left


def test_an_mp4_write_stopped_midway_leaves_the_mp4_there_before(tmp_path, monkeypatch) -> None:
    """An MP4 was encoded into its file as the frames came, so a stop midway left a
    truncated file in place of the video there before; it is encoded first, then moved in."""
    if not any(importlib.util.find_spec(name) for name in ("imageio_ffmpeg", "av")):
        pytest.skip("no MP4 encoder installed (imageio-ffmpeg)")
    frames = [np.full((16, 16, 3), value, np.uint8) for value in (0, 128, 255)]
    write_video(frames, tmp_path / "out.mp4")
    before = (tmp_path / "out.mp4").read_bytes()
    assert before[4:8] == b"ftyp" and len(iio.imread(tmp_path / "out.mp4", index=None)) == 3
    encode = iio.imwrite

    def stopped_midway(target, image, **kwargs):
        encoded = encode("<bytes>", image, **kwargs)
        if target != "<bytes>":
            Path(target).write_bytes(encoded[: len(encoded) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(iio, "imwrite", stopped_midway)
    with pytest.raises(KeyboardInterrupt):
        write_video(frames[::-1], tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def soft_discs(shift: int) -> np.ndarray:
    """A 96x96 frame as anti-aliased renderers draw: a red and a blue disc on white, their
    edges blended over 12 pixels (hundreds of colours)."""
    rows, cols = np.mgrid[0:96, 0:96].astype(float)
    frame = np.full((96, 96, 3), 255.0)
    for (r, c), colour in (((30, 30 + shift), (220, 30, 30)), ((60, 60 - shift), (30, 30, 220))):
        cover = np.clip((24 - np.hypot(rows - r, cols - c)) / 12, 0, 1)[..., None]
        frame = frame * (1 - cover) + np.array(colour) * cover
    return frame.round().astype(np.uint8)


def test_many_colours_share_one_palette_close_to_the_frames(tmp_path) -> None:
    frames = [soft_discs(shift) for shift in range(0, 20, 4)]
    assert exact_palette(frames) is None  # over 256 colours
    indices, palette = shared_palette(frames)
    assert len(palette) <= 256
    for frame, index in zip(frames, indices, strict=True):
        error = np.abs(palette[index].astype(int) - frame.astype(int))
        assert error.mean() < 3 and error.max() <= 32  # a few levels in 255; edges worst
        flat = (frame == 255).all(-1)  # the background: within a level or four
        assert error[flat].max() <= 4
    write_video(frames, tmp_path / "discs.gif")
    back = iio.imread(tmp_path / "discs.gif", index=None)
    np.testing.assert_array_equal(back, np.stack([palette[index] for index in indices]))


def test_large_frames_are_shrunk_to_the_frame_size() -> None:
    frame = np.zeros((700, 700, 3), np.uint8)
    frame[:350] = 255  # the top half white: still the top half after shrinking
    small = fit(frame)
    assert small.shape == (400, 400, 3)
    assert (small[:199] == 255).all() and (small[201:] == 0).all()
    assert fit(np.zeros((400, 300, 3), np.uint8)).shape == (400, 300, 3)  # small enough


def test_recurrent_policy_renders_the_episodes_eval_measures() -> None:
    trainer = MappoTrainer(
        MappoConfig(num_envs=1, minibatch_size=1, seed=4, compile="false", recurrent=True)
    )
    env = SpreadEnv(num_envs=1, seed=0, record_frames=True)
    returns = run_episodes(trainer.policy, env, 2, deterministic=True, seed=11)
    expected = evaluate(trainer.policy, trainer.env, 2, deterministic=True, seed=11)
    assert returns == pytest.approx(expected)
    played = _played(trainer.policy, SpreadEnv(num_envs=1, seed=0), 2, seed=11)
    for frames, episode in zip(env.rendered_episodes()[1:3], played, strict=True):
        np.testing.assert_array_equal(np.stack(frames), spread_palette(3)[spread_frames(episode)])


def test_env_that_cannot_render_to_an_array_says_so_in_one_line(tmp_path, capsys) -> None:
    pytest.importorskip("gymnasium")
    env = "gymnasium:gym_envs:WindowOnly-v0"
    config = MappoConfig(env=env, num_envs=2, minibatch_size=1, compile="false")
    trainer = MappoTrainer(config)
    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    trainer.env.close()
    assert main(["eval", str(tmp_path), "--render", str(tmp_path / "out.gif")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: env '{env}' cannot render to an array: its render modes are 'human' "
        "('human' draws in a window), and --render records the frames of "
        "render_mode='rgb_array'; an env listing 'rgb_array' in metadata['render_modes'] "
        "renders (mappo eval without --render still scores this run)\n"
    )
    assert not (tmp_path / "out.gif").exists()
    assert main(["eval", str(tmp_path), "--episodes", "2"]) == 0  # scoring needs no frames


def test_env_whose_render_fails_says_so_as_a_render_error(tmp_path, capsys) -> None:
    pytest.importorskip("gymnasium")
    env = "gymnasium:gym_envs:NoDisplay-v0"
    trainer = MappoTrainer(MappoConfig(env=env, num_envs=2, minibatch_size=1, compile="false"))
    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    trainer.env.close()
    assert main(["eval", str(tmp_path), "--render", str(tmp_path / "out.gif")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: env '{env}' could not draw a frame: render() raised RuntimeError: "
        'Cannot connect to "None"; an env that draws with pyglet or pygame may need a display '
        "even for rgb_array (run the command under xvfb-run)\n"
    )


DOES_NOT_DRAW = (
    "records no frames (an env that draws itself takes record_frames=True and overrides "
    "MultiAgentEnv.rendered_episodes); mappo eval without --render still scores the run"
)


class CountingEnv(MultiAgentEnv):
    """A vectorized env of the user's own that draws itself: two agents whose episodes last
    `LENGTH` steps, copy 0 drawn as an 8x8 grey square as bright as its step count."""

    LENGTH = 3

    def __init__(
        self,
        num_envs: int,
        device: str = "cpu",
        seed: int | None = None,
        record_frames: bool = False,
    ) -> None:
        self.num_envs, self.device = num_envs, torch.device(device)
        self.spec = EnvSpec(
            name="counting",
            agent_names=("a", "b"),
            obs_dim=1,
            state_dim=2,
            action=ActionSpec("discrete", nvec=(2,)),
            max_episode_steps=self.LENGTH,
            obs_sizes=(1, 1),
        )
        self.record_frames = record_frames
        self.episodes: list[list[np.ndarray]] = []
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.reset(seed)

    def _frame(self) -> np.ndarray:
        return np.full((8, 8, 3), 60 * int(self.t[0]), np.uint8)

    def reset(self, seed=None):
        self.t.zero_()
        if self.record_frames:
            self.episodes.append([self._frame()])
        return self.get_observation(0)[:, None].expand(-1, 2, -1).clone()

    def step(self, actions):
        self.t += 1
        final = self.get_observation(0)[:, None].expand(-1, 2, -1).clone()
        if self.record_frames:
            self.episodes[-1].append(self._frame())
        done = self.t >= self.LENGTH
        self.t[done] = 0
        if self.record_frames and bool(done[0]):
            self.episodes.append([self._frame()])
        obs = self.get_observation(0)[:, None].expand(-1, 2, -1).clone()
        return MultiAgentStepResult(
            obs=obs,
            state=obs.flatten(1),
            reward=actions.float(),
            terminated=torch.zeros(self.num_envs, 2, dtype=torch.bool),
            truncated=done[:, None].expand(-1, 2).clone(),
            alive=self.get_alive(),
            action_mask=self.get_action_mask(),
            env_done=done,
            final_obs=final,
            final_state=final.flatten(1),
            info={},
        )

    def get_global_state(self):
        return self.t.float()[:, None].expand(-1, 2).clone()

    def get_observation(self, agent_id):
        return self.t.float()[:, None]

    def get_action_mask(self):
        return torch.ones(self.num_envs, 2, 2, dtype=torch.bool)

    def get_alive(self):
        return torch.ones(self.num_envs, 2, dtype=torch.bool)

    def rendered_episodes(self):
        return self.episodes


def counting_env(num_envs: int, device: str = "cpu", seed: int | None = None) -> CountingEnv:
    """A vectorized factory that does not take record_frames."""
    return CountingEnv(num_envs, device, seed)


def test_a_users_vectorized_env_that_draws_itself_is_rendered(tmp_path) -> None:
    config = MappoConfig(
        env=f"{__name__}:CountingEnv", num_envs=1, minibatch_size=1, compile="false"
    )
    save_checkpoint(tmp_path / "checkpoint.pt", MappoTrainer(config).state_dict())
    gif = tmp_path / "counting.gif"
    assert main(["eval", str(tmp_path), "--render", str(gif), "--episodes", "2"]) == 0
    # Each episode from its reset to its last step; its held last frames merge into one.
    shades = iio.imread(gif, index=None)[:, 0, 0, 0].tolist()
    assert shades == [0, 60, 120, 180] * 2


def test_an_env_that_does_not_draw_itself_is_refused_in_one_line_naming_it() -> None:
    for env, who in (("reference", "ReferenceEnv"), (f"{__name__}:counting_env", "counting_env")):
        with pytest.raises(RenderError) as info:
            make_env(env, 1, render=True)
        assert str(info.value) == f"env '{env}' does not draw itself: {who} {DOES_NOT_DRAW}"


def test_a_jaxmarl_env_is_refused_without_being_built(monkeypatch) -> None:
    pytest.importorskip("jaxmarl")
    from mappo.envs import jaxmarl

    monkeypatch.setattr(jaxmarl, "make_jaxmarl_env", None)  # building it would fail
    with pytest.raises(RenderError) as info:
        make_env("jaxmarl:MPE_simple_spread_v3", 1, render=True)
    assert str(info.value) == (
        f"env 'jaxmarl:MPE_simple_spread_v3' does not draw itself: JaxMarlEnv {DOES_NOT_DRAW}"
    )
