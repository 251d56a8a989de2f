"""`mappo train | eval | plot | report | export`: argument parsing and dispatch.

Every MappoConfig field is a train flag, and a TOML file can hold any of them;
the work itself is the library's (`Run`, `evaluate_run`, `render_run`,
`plot_runs`, `write_report`, `export_run`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mappo.config import (
    ENV_DIM_FIELDS,
    FIELDS,
    check_new_seed,
    nearest_name,
    parse_cli_value,
    parse_sweep,
)
from mappo.distributed import another_rank_failed, launch_ranks, report_rank_failure
from mappo.errors import CheckpointError, ConfigError, RunFolderError, exit_line
from mappo.policy import require_usable_device
from mappo.presets import PRESETS, build_config
from mappo.run import Run, StopRun, info_lines, stop_training
from mappo.run_folder import is_slots_folder, require_wandb, slot_folders
from mappo.seeds import parse_seeds
from mappo.status import status_lines
from mappo.stop_signals import StoppedBySignal, output_lost, silence, stdout_reader_gone

logger = logging.getLogger(__name__)


def given_path(text: str) -> Path:
    """An argparse type: a path, refusing the empty one (an unset shell variable), which
    would name the current folder: a run, an export or a plot written over what is there."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a path (an empty one would mean this folder)")
    return Path(text)


EVAL_EPISODES = 100
RENDER_EPISODES = 3
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write's errors that name no file
STOP_WAIT_S = 120.0  # an update a stop waits for: seconds on a CPU (a first compile: minutes)
# The env-derived fields are read off the env, so they are no flags (a config file may hold them).
CLI_FIELDS = {name: f for name, f in FIELDS.items() if name not in ENV_DIM_FIELDS}
RUN_DIR = {
    "type": given_path,
    "help": "run folder holding checkpoint.pt, or a checkpoint file "
    "(RUN/best.pt: the best evaluation's)",
}
RUN_DIRS = {"type": given_path, "nargs": "+", "metavar": "RUN_DIR", "help": "run folders"}
TRUE = {"action": "store_true"}
# command: (its help, {option or positional: argparse keywords})
COMMANDS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "train": ("train a MAPPO policy and write a run folder", {
        "--config": {"type": given_path, "help": "TOML file with any MappoConfig fields"},
        "--run-dir": {"type": given_path, "help": "run folder (default runs/<env>-<time>)"},
        "--force": {**TRUE, "help": "overwrite an existing run folder"},
        "--preset": {"choices": sorted(PRESETS),
                     "help": "start from a named set of settings (config file and flags win)"},
        "--resume": {"type": given_path, "metavar": "RUN_DIR",
                     "help": "continue the run in RUN_DIR from its checkpoint (compile, device, "
                             "threads, workers, intervals and --total-steps may change)"},
        "--seeds": {"metavar": "S,S,...",
                    "help": "train these seeds in one process as one batched network; seed s "
                            "writes the run folder RUN_DIR/seed_<s> (--resume RUN_DIR goes on)"},
        "--sweep": {"action": "append", "metavar": "FIELD=V,V,...",
                    "help": "train every combination of these values, and every seed, in one "
                            "process as one batched network (repeat for more fields); each "
                            "writes RUN_DIR/<field=value,...>/seed_<s>"},
        "--nproc": {"type": int, "default": 1,
                    "help": "data-parallel ranks on this node (runs torchrun for you)"},
        "--wandb": {**TRUE, "help": "also log to Weights & Biases (WANDB_MODE=offline works)"},
        "--wandb-project": {"default": "mappo", "help": "W&B project name"},
        "--quiet": {**TRUE, "help": "no progress bar (on a terminal) or lines (in a log)"},
    }),
    "eval": ("evaluate a run's trained policy", {
        "run_dir": RUN_DIR,
        "--episodes": {"type": int, "help": f"episodes to run (default {EVAL_EPISODES}; "
                                            f"{RENDER_EPISODES} with --render)"},
        "--deterministic": {**TRUE, "help": "greedy actions"},
        "--json": {**TRUE, "help": "end with one JSON line"},
        "--device": {"help": "torch device (default: the run's)"},
        "--seed": {"type": int, "default": 1000, "help": "seed of the eval envs"},
        "--render": {"type": given_path, "metavar": "FILE",
                     "help": "draw the episodes (env copy 0, on cpu unless --device) into "
                             "FILE.gif or FILE.mp4"},
        "--fps": {"type": float, "default": 10.0, "help": "frames per second of --render"},
        "--opponent": {"metavar": "random|RUN_DIR",
                       "help": "play a uniformly random legal player or RUN_DIR's policy, ours "
                               "taking each seat in turn: --episodes in each seat"},
    }),
    "plot": ("learning curves of runs; seeds become a mean ± std", {
        "run_dirs": RUN_DIRS,
        "--out": {"type": given_path, "default": Path("curves.png"),
                  "help": "image file to write (.png, .pdf; default curves.png)"},
        "--x": {"choices": ("env_steps", "wall_time"), "default": "env_steps",
                "help": "x axis (default env_steps)"},
        "--y": {"choices": ("episode_return", "eval_return"), "default": "episode_return",
                "help": "training episodes' return, or the evaluations' (--eval-interval)"},
    }),
    "report": ("final returns of runs, seeds pooled: mean, IQM, bootstrap CIs, P(X > Y)", {
        "run_dirs": RUN_DIRS,
        "--out": {"type": given_path, "help": "also write the tables to this markdown file"},
        "--json": {"type": given_path, "help": "write the runs in marl-eval's JSON layout"},
        "--episodes": {"type": int,
                       "help": "score every run by this many greedy episodes of its "
                               "checkpoint.pt (default: the last eval_return logged in "
                               f"training, else {EVAL_EPISODES} episodes)"},
        "--plot": {"type": given_path, "help": "IQM training curves with CI bands (.png)"},
        "--sampled": {**TRUE, "help": "score by episodes whose actions are sampled from the "
                                      "policy, as most published MAPPO figures are (default "
                                      "greedy)"},
    }),
    "stop": ("stop the process training in a run folder, as Ctrl-C does: it saves first", {
        "run_dir": {"type": given_path, "help": "run folder (or the folder of a --seeds or --sweep "
                                          "run's folders)"},
        "--wait": {"type": float, "default": STOP_WAIT_S,
                   "help": f"seconds to wait for it to save and exit (default {STOP_WAIT_S:g})"},
    }),
    "status": ("where runs stand: training or stopped, env steps, recent return, checkpoint", {
        "run_dirs": {**RUN_DIRS, "help": "run folders (or folders of --seeds or --sweep runs)"},
    }),
    "export": ("write the actors as TorchScript (and ONNX)", {
        "run_dir": RUN_DIR,
        "--out": {"type": given_path, "required": True, "help": "folder for the files"},
        "--no-onnx": {**TRUE, "help": "TorchScript only"},
    }),
}  # fmt: skip


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The `mappo` command line: `COMMANDS`, and `train` with one flag per config field.

    No abbreviations: `--total-step` is refused with a hint, not taken as `--total-steps`.
    """
    parser = argparse.ArgumentParser(
        prog="mappo", description="Multi-Agent PPO", allow_abbrev=False
    )
    parser.add_argument(
        "--debug", action="store_true", help="full tracebacks for env and file errors"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, (help_text, options) in COMMANDS.items():
        sub = commands.add_parser(command, help=help_text, allow_abbrev=False)
        for name, keywords in options.items():
            sub.add_argument(name, **keywords)
    train = commands.choices["train"]
    metavars = {"bool": "true|false", "AutoBool": "auto|true|false", "dict": "JSON"}
    for name, f in CLI_FIELDS.items():
        kind = str(f.type)  # the annotation's text (postponed annotations)
        # As the flag takes it: `true`, not Python's True; an empty string shown as none.
        default = (
            "{}"
            if kind == "dict"
            else str(f.default).lower()
            if isinstance(f.default, bool)
            else f.default
            if f.default != ""
            else "none"
        )
        train.add_argument(
            _flag(name),
            dest=f"cfg_{name}",
            metavar=metavars.get(kind, kind.upper()),
            help=f"{f.metadata['help']} (default {default})",
        )
    return parser


def _cli_overrides(args: argparse.Namespace) -> dict:
    """The config fields given as flags, parsed to their types."""
    return {
        name: parse_cli_value(name, getattr(args, f"cfg_{name}"))
        for name in CLI_FIELDS
        if getattr(args, f"cfg_{name}") is not None
    }


def train(args: argparse.Namespace) -> int:
    """`mappo train`: a new run (one seed, or `--seeds`), or `--resume` of one, to its budget."""
    if args.nproc < 1:
        raise ConfigError(f"--nproc = {args.nproc}: must be >= 1 (the ranks on this node)")
    overrides = _cli_overrides(args)
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    sweep = parse_sweep(args.sweep) if args.sweep else None
    resumed_slots = args.resume is not None and is_slots_folder(args.resume)
    if (seeds is not None or sweep or resumed_slots) and (args.nproc > 1 or args.wandb):
        raise ConfigError(
            f"--{'sweep' if sweep else 'seeds'} trains every run in one process; it does not "
            f"combine with {'--nproc' if args.nproc > 1 else '--wandb'}"
        )
    if args.wandb:
        require_wandb()  # before any work
    with info_lines(None if args.quiet else sys.stdout):  # e.g. building the env copies
        return _train(args, overrides, seeds, sweep)


def _train(
    args: argparse.Namespace, overrides: dict, seeds: list[int] | None, sweep: dict | None
) -> int:
    """`train` after its checks: start or resume the run, and train it."""
    if args.resume is not None:
        given = [f for f in ("config", "run_dir", "preset", "seeds", "sweep") if getattr(args, f)]
        if given:
            raise ConfigError(
                f"--resume continues the run in {args.resume} with its own config; "
                f"{', '.join(_flag(f) for f in given)} cannot be given"
            )
        run = Run.resume(args.resume, **overrides)
    else:
        if seeds is not None and "seed" in overrides:
            raise ConfigError("--seed and --seeds: give the seeds of the runs with --seeds only")
        if sweep and set(sweep) & {"seed"}:
            raise ConfigError("--sweep seed=...: give the seeds of the runs with --seeds")
        if sweep and (both := [name for name in sweep if name in overrides]):
            raise ConfigError(
                f"--sweep {both[0]}=... and {_flag(both[0])}: give the values of {both[0]} "
                "with --sweep only"
            )
        config = build_config(args.preset, args.config, overrides)
        run = Run.start(config, args.run_dir, seeds, args.force, sweep)
    threads = run.learner.config.torch_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if cores and threads > cores:
        logger.warning(
            f"torch_threads = {threads} is more than the {cores} cores this process may use: "
            "the threads wait for each other, slower than fewer"
        )
    summary = run.train(quiet=args.quiet, wandb_project=args.wandb_project if args.wandb else None)
    # A run a signal stopped (saved) exits as stopped: 128 + the signal's number, which the
    # entry point turns into that signal (`mappo.console`). A rank exits 0, as torchrun
    # would otherwise report it failed; the process that started the ranks says it.
    if summary.finished or summary.stopped_by is None or "WORLD_SIZE" in os.environ:
        return 0
    return 128 + signal.Signals[summary.stopped_by]


def evaluate(args: argparse.Namespace) -> int:
    """`mappo eval`: the run's episode return (per-agent mean, or the team return with
    `team_reward`) and, in a zero-sum game, each seat's outcomes, in self-play or against
    `--opponent`; with `--render`, the episodes drawn into a GIF or MP4."""
    from mappo.evaluation import evaluate_run
    from mappo.render import render_run

    if args.episodes is None:
        args.episodes = EVAL_EPISODES if args.render is None else RENDER_EPISODES
    if args.episodes < 1:
        raise ConfigError(f"--episodes = {args.episodes}: must be >= 1")
    check_new_seed(args.seed, "--seed")
    if args.device is not None:
        require_usable_device(args.device, "--device")
    if args.opponent is not None and args.render is not None:
        raise ConfigError("--opponent does not combine with --render, which draws self-play")
    _one_run(args.run_dir)
    if args.opponent not in (None, "random"):
        _one_run(Path(args.opponent), "--opponent ")
    start = time.perf_counter()
    with writable(("--render", args.render)):
        if args.render is not None:
            render = (args.render, args.episodes, args.deterministic, args.seed, args.fps)
            result = render_run(args.run_dir, *render, args.device or "cpu")
            print(result.render_line(args.render, time.perf_counter() - start))
        else:
            result = evaluate_run(
                args.run_dir, args.episodes, args.deterministic, args.device, args.seed,
                args.opponent,
            )  # fmt: skip
            print("\n".join(result.summary(args.run_dir, args.deterministic)))
    if args.json:
        print(json.dumps(result.as_json(args.run_dir, args.deterministic, args.render)))
    return 0


def plot(args: argparse.Namespace) -> int:
    """`mappo plot`: the learning curves of several runs on one figure."""
    from mappo.plotting import plot_runs

    with writable(("--out", args.out)):
        groups = plot_runs(args.run_dirs, args.out, args.x, args.y)
    for group in groups:
        print(f"{group.label}: {len(group.runs)} run{'s' * (len(group.runs) != 1)}")
    print(f"wrote {args.out}")
    return 0


def report(args: argparse.Namespace) -> int:
    """`mappo report`: the runs' pooled final returns; the markdown, JSON and plot asked for."""
    from mappo.report import write_report

    with writable(("--out", args.out), ("--json", args.json), ("--plot", args.plot)):
        text = write_report(
            args.run_dirs, args.episodes, args.out, args.json, args.plot, args.sampled
        )
    print(text, end="")
    for written in (args.out, args.json, args.plot):
        if written is not None:
            print(f"wrote {written}")
    return 0


def stop(args: argparse.Namespace) -> int:
    """`mappo stop`: SIGINT to the process training in a run folder; 0 once it has saved and
    let go of the folder, 1 if it is still saving after --wait seconds."""
    if not args.wait >= 0:  # NaN too
        raise ConfigError(f"--wait {args.wait}: give the seconds to wait, >= 0")
    return 0 if stop_training(args.run_dir, args.wait, print) else 1


def status(args: argparse.Namespace) -> int:
    """`mappo status`: one line per run saying where it stands and how it goes on."""
    for path in args.run_dirs:
        for line in status_lines(path):
            print(line)
    return 0


def export(args: argparse.Namespace) -> int:
    """`mappo export`: a run's actors, one file per policy, and layout.json."""
    from mappo.export import export_run

    _one_run(args.run_dir)
    with writable(("--out", args.out), folder=True):
        layout = export_run(args.run_dir, args.out, onnx=False if args.no_onnx else None)
    for policy in layout["policies"]:
        files = " + ".join(f for f in (policy["file"], policy.get("onnx")) if f)
        print(f"{files}: agents {', '.join(policy['agent_names'])}")
    print(f"wrote {args.out / 'layout.json'}")
    if not args.no_onnx and not any("onnx" in policy for policy in layout["policies"]):
        print("no .onnx files: onnx is not installed (pip install 'mappo[export]')")
    return 0


@contextlib.contextmanager
def writable(*outputs: tuple[str, Path | None], folder: bool = False) -> Iterator[None]:
    """Refuse, before any work, an output path given by a flag (`(flag, path)`, path None:
    not given) that cannot be written: its folder (the path itself with `folder`) cannot
    be made, a file being in the way, or a file is asked for where a folder is. The folders
    made for them are removed again, where still empty, if the work in the block fails."""
    made: list[Path] = []
    given = [path for _, path in outputs if path is not None]
    try:
        for flag, path in outputs:
            if path is not None:
                made += _make_folder_for(flag, path, folder)
        try:
            yield
        except OSError as err:
            if err.filename is not None or not given or err.errno not in DISK_FULL:
                raise
            # A write that fails midway on a full disk names no file: name the outputs.
            named = str(given[0]) if len(given) == 1 else f"one of {', '.join(map(str, given))}"
            raise OSError(err.errno, err.strerror, named) from err
    except BaseException:
        for made_folder in reversed(made):
            with contextlib.suppress(OSError):  # not empty: something was written there
                made_folder.rmdir()
        raise


def _make_folder_for(flag: str, path: Path, folder: bool) -> list[Path]:
    """`writable`'s check of one output; the folders it made, outermost first."""
    where = path if folder else path.parent
    if blocking := next((p for p in (where, *where.parents) if p.is_file()), None):
        raise ConfigError(f"{flag} {path}: {blocking} is a file, not a folder")
    missing = [p for p in (where, *where.parents) if not p.exists()][::-1]
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"{flag} {path}: cannot make the folder {where} ({err.strerror})"
        ) from None
    if not folder and path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    return missing


def _one_run(run: Path, flag: str = "") -> None:
    """Refuse a RUN argument of `eval` or `export` (or `flag`'s) that holds no run of its
    own: a folder that does not exist, or one of a `--seeds` run or a sweep, whose runs are
    its seeds'. A checkpoint file, or a folder with none, is left to the checkpoint's checks."""
    if run.suffix == ".pt" or (run / "checkpoint.pt").is_file():
        return
    if not run.exists():
        raise RunFolderError(f"{flag}run folder {run} does not exist")
    if is_slots_folder(run):
        slots = [str(slot.relative_to(run)) for slot in slot_folders(run)]
        listing = ", ".join(slots[:3]) + (f" and {len(slots) - 3} more" if len(slots) > 3 else "")
        raise RunFolderError(
            f"{flag}run folder {run} holds the runs of a --seeds run or sweep ({listing}): give "
            f"one of them, e.g. {run / slots[0]} (mappo report {run} scores them all)"
        )


def _unknown_flag_error(
    unknown: list[str], command: argparse.ArgumentParser, name_of_command: str
) -> ConfigError:
    """A ConfigError for the first unrecognized argument, with the nearest flag of the
    command it was given to suggested (a train option given to another command says so)."""
    flag = next((u for u in unknown if u.startswith("--")), unknown[0])
    name = flag.lstrip("-").split("=")[0].replace("-", "_")
    if name_of_command == "train" and name in ENV_DIM_FIELDS:
        return ConfigError(
            f"unknown option '{flag}'; {name} is read off the env, not set "
            "(the env's own options go in --env-kwargs)"
        )
    if flag == "--debug":  # an option of `mappo` itself
        return ConfigError(
            f"unknown option '--debug' for 'mappo {name_of_command}': it goes before the "
            f"command, mappo --debug {name_of_command} ..."
        )
    options = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
    if name_of_command != "train" and name in CLI_FIELDS:
        return ConfigError(
            f"'mappo {name_of_command}' has no option '{flag}': it reads the "
            f"run's own config.toml (options: {', '.join(options)})"
        )
    given = flag.split("=")[0]
    if given not in options and (
        owners := [c for c, (_, opts) in COMMANDS.items() if c != name_of_command and given in opts]
    ):  # `mappo train --render x.gif`: an option of eval, not a near miss of --encoder
        names = [f"mappo {owner}" for owner in owners]
        listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        return ConfigError(
            f"'mappo {name_of_command}' has no option '{given}': it is an option of {listed}"
        )
    near = nearest_name(name, [o[2:].replace("-", "_") for o in options])
    hint = f"; did you mean {_flag(near[0])}?" if near else ""
    return ConfigError(f"unknown option '{flag}' for 'mappo {name_of_command}'{hint}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mappo` command: one line and exit code 2 for bad input, 3 for an
    env that broke. A rank of `mappo train --nproc` hands its code to the launcher instead
    (`launch_ranks`), and exits quietly where its error followed another rank's."""
    try:
        return _command(argv)
    except RankFailed:  # torchrun would add its traceback and failure report to the line
        return 0
    except Exception:
        if another_rank_failed():  # a collective whose peer exited: that rank said why
            return 0
        raise


class RankFailed(Exception):  # noqa: N818 - not an error here: handed on
    """A rank of `launch_ranks` failed with a one-line error, left to the launcher."""


def _failed(code: int, line: str) -> int:
    """Say `line` on stderr and give exit code `code`; a rank of `launch_ranks` leaves both
    to the launcher (`RankFailed`), which says each distinct line once: every rank may meet
    the same bad config."""
    if report_rank_failure(code, line):
        raise RankFailed(line)
    try:
        print(line, file=sys.stderr)
    except OSError:  # stderr on a full disk, or closed: the exit code still says it
        silence(sys.stderr)
    return code


def _command(argv: list[str] | None) -> int:
    """The command `argv` names, its errors as one line and an exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown:
            commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            raise _unknown_flag_error(unknown, commands.choices[args.command], args.command)
        if args.command == "train" and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
            if args.seeds is None and args.sweep is None:  # train refuses them with --nproc
                return launch_ranks(args.nproc, sys.argv[1:] if argv is None else argv)
        return HANDLERS[args.command](args)
    except (ConfigError, RunFolderError, CheckpointError, MemoryError, RuntimeError) as err:
        said = exit_line(err)  # EnvError is a RuntimeError
        # --debug shows where an env broke or memory ran out; bad input needs no traceback.
        bad_input = isinstance(err, ConfigError | RunFolderError | CheckpointError)
        if said is None or (args.debug and not bad_input):
            raise
        code, line = said
        return _failed(code, f"mappo: {line}")
    except OSError as err:  # a file a command reads or writes (a run's own writes: WriteError)
        if isinstance(err, BrokenPipeError) and stdout_reader_gone():
            # `mappo report | head -1`: the reader has what it wanted. No error at exit either,
            # when Python flushes stdout; a shell's code for a process SIGPIPE (13) ended.
            output_lost(err, sys.stdout)
            return 141
        if args.debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        return _failed(2, f"mappo: error: {where}{err.strerror or err}")
    except (KeyboardInterrupt, StopRun) as stop:  # outside a run's own handling, or a second
        # signal while it closed (its saves are done)
        name = str(stop) if isinstance(stop, StoppedBySignal | StopRun) else "SIGINT"
        if name == "SIGINT":
            return _failed(130, "mappo: interrupted")
        return _failed(128 + signal.Signals[name], f"mappo: stopped by {name}")


HANDLERS = {
    "train": train,
    "eval": evaluate,
    "plot": plot,
    "report": report,
    "stop": stop,
    "status": status,
    "export": export,
}

if __name__ == "__main__":
    sys.exit(main())
