"""The ``xlt`` command line.

Each subcommand is one function decorated with ``@command``: it receives its
own ``argparse`` parser, adds its arguments and returns the function that runs
it (which returns the exit status). Errors the user can fix are reported as one
line on stderr with exit status 1; argparse's usage errors exit with 2.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from xlt_plugin.extras import MissingExtraError, require

__all__ = ["main", "build_parser", "command", "CommandError"]

Runner = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Runner]]] = {}


class CommandError(Exception):
    """A problem the user can fix; ``main`` prints it as one line."""


def command(name: str, help: str) -> Callable:
    """Register a subcommand; the function's docstring is its ``--help`` text.

    Arguments
    ---------
    name : str
        The subcommand (``xlt NAME``).
    help : str
        One line for ``xlt --help``.

    Returns
    -------
    Callable
        A decorator for a function ``setup(parser) -> run(args) -> int``.
    """

    def register(setup: Callable[[argparse.ArgumentParser], Runner]):
        _COMMANDS[name] = (help, setup)
        return setup

    return register


@command("synth", help="write an espeak-ng speech corpus in Common Voice layout")
def synth(parser: argparse.ArgumentParser) -> Runner:
    """Synthesize speech with espeak-ng and write it exactly like a Common Voice
    release: DIR/clips/*.mp3 (16 kHz mono) and train/dev/test/validated.tsv with the
    v17 columns. The same arguments and seed give the same corpus.
    """
    parser.add_argument(
        "--lang",
        required=True,
        metavar="LOCALE",
        help="Common Voice locale: en, de, es, ru, zh-CN, zh-HK, ...",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory (must not exist or be empty)",
    )
    parser.add_argument(
        "--utterances",
        required=True,
        type=int,
        metavar="N",
        help="total clips over train/dev/test (80/10/10), >= 3",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--accents",
        metavar="LIST",
        help="comma list of accent keys or 'all' (en: us, nyc, "
        "england, rp, lancashire, west_midlands, scotland, "
        "caribbean; default us)",
    )
    parser.add_argument(
        "--domain", metavar="NAME", help="English domain sentences: medical, atc"
    )
    parser.add_argument(
        "--text", metavar="FILE", help="read sentences from FILE (one per line) instead"
    )
    parser.add_argument(
        "--voice",
        metavar="VOICE",
        help="espeak-ng voice to use (e.g. sw, eu+f2); with --text "
        "any espeak-ng language works",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="J",
        help="synthesis processes (default: number of CPUs)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output directory"
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=3000,
        metavar="V",
        help="draw words from the V most frequent (3000)",
    )
    parser.add_argument(
        "--per-speaker",
        type=int,
        default=10,
        metavar="K",
        help="about K clips per synthetic speaker (10)",
    )
    parser.add_argument(
        "--conditions",
        default="clean",
        metavar="PRESET|FILE.yaml",
        help="acoustic conditions: clean (default), realistic (noise, rooms, "
        "microphones, more speaker variety), or a YAML file of ranges; "
        "per-clip draws go to DIR/conditions.tsv",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.synth.corpus import SynthError, synthesize_corpus
        from xlt_plugin.synth.espeak import EspeakError

        try:
            info = synthesize_corpus(
                args.out,
                args.lang,
                args.utterances,
                seed=args.seed,
                accents=args.accents,
                domain=args.domain,
                text_file=args.text,
                voice=args.voice,
                jobs=args.jobs,
                overwrite=args.overwrite,
                vocab_size=args.vocab_size,
                utterances_per_speaker=args.per_speaker,
                progress=not args.quiet,
                conditions=args.conditions,
            )
        except (SynthError, EspeakError) as err:
            raise CommandError(str(err)) from None
        splits = ", ".join(
            f"{split} {info['utterances'][split]} clips/"
            f"{info['speakers'][split]} speakers"
            for split in info["utterances"]
        )
        print(
            f"wrote {sum(info['utterances'].values())} clips "
            f"({info['total_seconds'] / 60:.1f} min) to {info['out_dir']}: {splits}"
        )
        if "conditions" in info:
            summary = info["conditions"]
            rt60 = [room["rt60_measured"] for room in summary["rooms"]]
            print(
                f"conditions {summary['preset']}: mean SNR {summary['mean_snr_db']} dB"
                + (f", RT60 {min(rt60):.2f}-{max(rt60):.2f} s" if rt60 else "")
            )
        return 0

    return run


@command("export", help="export a recipe run as an EncoderASR folder + model card")
def export(parser: argparse.ArgumentParser) -> Runner:
    """Write the best checkpoint (lowest valid CER) of a recipe run as a folder that
    SpeechBrain's EncoderASR.from_hparams(source=DIR) loads, with a HuggingFace
    model card (README.md). The folder is also a pretrained_path for the next
    transfer.
    """
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN",
        help="a recipe's output folder (or one of its save/CKPT+* folders)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder to write (replaced)"
    )
    parser.add_argument("--name", help="model name in the card (default: derived)")
    parser.add_argument(
        "--min-key",
        default="CER",
        metavar="KEY",
        help="checkpoint meta key to minimise (CER)",
    )
    parser.add_argument(
        "--data-origin",
        choices=("auto", "synthetic", "recorded"),
        default="auto",
        help="say whether the training audio was synthetic (auto: detect)",
    )

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.export.hub import ExportError, export_run

        synthetic = {"auto": None, "synthetic": True, "recorded": False}
        try:
            out = export_run(
                args.checkpoint,
                args.out,
                min_key=args.min_key,
                name=args.name,
                synthetic=synthetic[args.data_origin],
            )
        except (ExportError, OSError) as err:
            raise CommandError(str(err)) from None
        print(f"exported {args.checkpoint} to {out} (model card: {out}/README.md)")
        return 0

    return run


@command("average", help="interpolate a fine-tuned run with its base (hub layout)")
def average(parser: argparse.ArgumentParser) -> Runner:
    """Write alpha * finetuned + (1 - alpha) * base (encoder and the head rows of
    shared tokens; BatchNorm statistics averaged) as a hub-layout folder that
    load_pretrained opens and a transfer takes as pretrained_path. Alpha 0 gives
    the base, 1 the fine-tuned model.
    """
    parser.add_argument("--base", required=True, metavar="DIR", help="base model")
    parser.add_argument(
        "--finetuned",
        required=True,
        metavar="RUN",
        help="a recipe run fine-tuned from the base (its best checkpoint), "
        "or a hub-layout folder",
    )
    parser.add_argument(
        "--alpha", required=True, type=float, help="weight of the fine-tuned model"
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder to write (replaced)"
    )
    parser.add_argument(
        "--min-key", default="CER", metavar="KEY", help="checkpoint meta key (CER)"
    )

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.averaging import average_run

        try:
            out = average_run(
                args.base, args.finetuned, args.alpha, args.out, min_key=args.min_key
            )
        except (ValueError, OSError, RuntimeError) as err:
            raise CommandError(str(err)) from None
        print(f"averaged {args.finetuned} with {args.base} (alpha {args.alpha}): {out}")
        return 0

    return run


@command("transcribe", help="transcribe audio files (greedy, beam search, n-gram LM)")
def transcribe(parser: argparse.ArgumentParser) -> Runner:
    """Transcribe audio files (wav, flac, mp3, ...; any sample rate; stereo is
    down-mixed) with a model folder; prints FILE<TAB>TEXT per file. Files longer
    than --chunk-seconds are cut at pauses.
    """
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="model folder (xlt export, <output_folder>/model) or .nemo",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    parser.add_argument(
        "--beam",
        type=int,
        metavar="N",
        help="beam width (default: 1 = greedy; 16 with --lm or --hotwords)",
    )
    parser.add_argument("--lm", metavar="FILE.arpa", help="word n-gram LM to fuse")
    parser.add_argument(
        "--lm-weight", type=float, default=0.5, help="LM weight, alpha (0.5)"
    )
    parser.add_argument(
        "--word-bonus", type=float, default=1.0, help="bonus per word, beta (1.0)"
    )
    parser.add_argument(
        "--hotwords", metavar="LIST", help="comma-separated words to favour"
    )
    parser.add_argument(
        "--hotword-weight", type=float, default=10.0, help="hotword bonus (10)"
    )
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="longest chunk fed to the model (30)",
    )
    parser.add_argument(
        "--decoder",
        choices=("auto", "flashlight", "python"),
        default="auto",
        help="beam search engine: flashlight (compiled, extra [lm]), python "
        "(SpeechBrain's), auto (flashlight when installed)",
    )

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.decode.lm import ArpaError
        from xlt_plugin.decode.transcribe import Transcriber

        hotwords = [w for w in (args.hotwords or "").split(",") if w.strip()]
        beam = args.beam
        if beam is None:
            beam = 16 if (args.lm or hotwords) else 1
        if beam < 1 or args.chunk_seconds <= 0:
            raise CommandError("--beam must be >= 1 and --chunk-seconds > 0")
        missing = [f for f in args.files if not os.path.isfile(f)]
        if missing:
            raise CommandError(f"no such audio file: {', '.join(missing)}")
        try:
            transcriber = Transcriber.from_dir(
                args.model,
                chunk_seconds=args.chunk_seconds,
                beam=beam,
                lm=args.lm,
                lm_weight=args.lm_weight,
                word_bonus=args.word_bonus,
                hotwords=hotwords,
                hotword_weight=args.hotword_weight,
                decoder=args.decoder,
            )
        except (OSError, ValueError, KeyError, ImportError, ArpaError) as err:
            raise CommandError(f"{err}") from None
        for path in args.files:
            try:
                text = transcriber.transcribe_file(path)
            except (OSError, ValueError) as err:
                raise CommandError(str(err)) from None
            print(f"{path}\t{text}", flush=True)
        return 0

    return run


@command("lm", help="build an ARPA word n-gram model (Kneser-Ney) from a text file")
def lm(parser: argparse.ArgumentParser) -> Runner:
    """Estimate an interpolated modified Kneser-Ney word n-gram model from a text
    file (one sentence a line) and write it as ARPA, for `xlt transcribe --lm` and
    KenLM.
    """
    parser.add_argument("--text", required=True, metavar="FILE", help="sentences")
    parser.add_argument("--out", required=True, metavar="FILE.arpa", help="output")
    parser.add_argument("--order", type=int, default=3, metavar="N", help="n (3)")
    parser.add_argument(
        "--language",
        metavar="LOCALE",
        help="normalise the text like the model's transcripts (e.g. en, es)",
    )

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.decode.lm import build_arpa

        if args.order < 1:
            raise CommandError(f"--order must be at least 1, got {args.order}")
        try:
            model = build_arpa(args.text, args.out, args.order, args.language)
        except (OSError, ValueError) as err:
            raise CommandError(str(err)) from None
        counts = ", ".join(f"{n}-grams {c}" for n, c in enumerate(model.counts(), 1))
        print(f"wrote {args.out}: {counts}")
        return 0

    return run


@command(
    "manifest", help="turn a CSV/TSV/JSONL of path,text into a Common Voice folder"
)
def manifest(parser: argparse.ArgumentParser) -> Runner:
    """Write train/dev/test.tsv in Common Voice layout for a manifest of `path,
    text` (optional `speaker`, `split`), so any recipe trains on it.
    """
    parser.add_argument("--manifest", required=True, metavar="FILE")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--lang", default="en", metavar="LOCALE")
    parser.add_argument("--domain", default="", help="sentence_domain value")
    parser.add_argument("--dev", type=float, default=0.1, help="dev share (0.1)")
    parser.add_argument("--test", type=float, default=0.1, help="test share (0.1)")
    parser.add_argument("--seed", type=int, default=1)

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.data.manifest import manifest_to_common_voice

        try:
            counts = manifest_to_common_voice(
                args.manifest,
                args.out,
                args.lang,
                args.domain,
                args.dev,
                args.test,
                args.seed,
            )
        except (OSError, ValueError) as err:
            raise CommandError(str(err)) from None
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    return run


@command("study", help="run the transfer study (make demo / make study) and report")
def study(parser: argparse.ArgumentParser) -> Runner:
    """Synthesize the corpora, pretrain the bases, run every transfer and its
    from-scratch baseline through the recipes, and write REPORT.md. A rerun reuses
    finished runs and resumes an interrupted one.
    """
    from xlt_plugin.study.runner import PROFILES

    parser.add_argument("--profile", default="demo", choices=sorted(PROFILES))
    parser.add_argument("--out", default="results/study", metavar="DIR")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (2)")
    parser.add_argument("--threads", type=int, default=1, help="threads per run (1)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per run (full, bases*, remap*, continual*; default: the "
        "profile's own: 3 for the remap profiles, 2 for bases, else 1)",
    )

    parser.add_argument(
        "--plan",
        action="store_true",
        help="say what the study in --out has finished and has left, with the "
        "hours left; run nothing",
    )

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.study.runner import build_profile, plan, run_study

        if args.plan:
            print(plan(build_profile(args.profile, args.seeds), Path(args.out)))
            return 0
        # The report's figures come last: fail now, not after hours of training.
        require("matplotlib", "xlt study (the report's figures)")
        result = run_study(args.profile, args.out, args.jobs, args.threads, args.seeds)
        print(result.summary())
        for name, why in result.failed.items():
            print(f"  {name}: {why}")
        return 1 if result.failed else 0

    return run


@command("pack", help="copy a study's finished runs without corpora or checkpoints")
def pack(parser: argparse.ArgumentParser) -> Runner:
    """Copy what a study's report reads and a rerun reuses (metrics, logs,
    definitions, English scores; the bases' weights) into DIR, to keep, share or
    continue the study on another machine (`xlt unpack`).
    """
    parser.add_argument("study", metavar="STUDY", help="an `xlt study --out` folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="the pack")

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.study.pack import pack_study

        try:
            done = pack_study(args.study, args.out)
        except (OSError, ValueError) as err:
            raise CommandError(str(err)) from None
        print(
            f"packed {len(done['packed'])} finished runs into {args.out} "
            f"({done['bytes'] / 1e6:.1f} MB); left out {len(done['unfinished'])} "
            "unfinished" + (f": {', '.join(done['unfinished'])}" * bool(
                done["unfinished"]))
        )  # fmt: skip
        for name in done["corpora_changed"]:
            print(
                f"warning: corpus {name} is not the bytes the packed runs trained "
                "on (made again on another machine?): its new runs and its "
                "packed runs saw different audio"
            )
        return 0

    return run


@command("unpack", help="put a pack's runs into a study folder (then `xlt study`)")
def unpack(parser: argparse.ArgumentParser) -> Runner:
    """Put the runs of an `xlt pack` folder into a study folder: `xlt study
    --out STUDY` then reuses them (it makes the corpora again) and trains the
    rest; runs already in STUDY are kept.
    """
    parser.add_argument("pack", metavar="PACK", help="an `xlt pack --out` folder")
    parser.add_argument("--out", required=True, metavar="STUDY", help="study folder")

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.study.pack import unpack_study

        try:
            restored = unpack_study(args.pack, args.out)
        except (OSError, ValueError) as err:
            raise CommandError(str(err)) from None
        print(f"unpacked {len(restored)} runs into {args.out}")
        return 0

    return run


@command("report", help="tables and figures from study or run folders")
def report(parser: argparse.ArgumentParser) -> Runner:
    """Regenerate REPORT.md from a study folder (with study.json), or write a report
    for any recipe output folders (e.g. runs on real Common Voice).
    """
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument(
        "--out", metavar="DIR", help="report folder (run folders, or with --task)"
    )
    parser.add_argument(
        "--publish",
        metavar="DIR",
        help="then copy the report and figures into DIR (e.g. docs/study-full) and "
        "refresh the README block between <!-- NAME:begin/end --> (NAME: DIR's name)",
    )
    parser.add_argument(
        "--task",
        nargs="+",
        metavar="TASK",
        help="report only the runs of these tasks of the study folder RUN_DIR "
        "(e.g. augment, while the rest of a full study trains), in --out "
        "(default: RUN_DIR-TASK beside it)",
    )
    parser.add_argument(
        "--readme",
        default="README.md",
        help="the README --publish refreshes ('none': only the --sections-in files)",
    )
    parser.add_argument(
        "--sections-in",
        nargs="*",
        metavar="FILE",
        help="files whose <!-- NAME/SECTION:begin/end --> blocks --publish fills "
        "with the report's section SECTION (default: recipes/*/README.md next to "
        "the README)",
    )

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.study.publish import publish_report
        from xlt_plugin.study.report import write_report, write_run_report

        require("matplotlib", "xlt report (figures)")

        folders = [Path(r) for r in args.runs]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise CommandError(f"not a folder: {', '.join(missing)}")
        try:
            if args.task:
                folders = [_task_view(folders, args.task, args.out)]
            if len(folders) == 1 and (folders[0] / "study.json").exists():
                if args.out and not args.task:
                    raise ValueError(
                        f"{folders[0]} is a study folder: its report is written "
                        "into it (REPORT.md, figures/); --out is for run folders "
                        "or with --task"
                    )
                path = write_report(folders[0])
            else:
                path = write_run_report(folders, args.out or "results/report")
        except (OSError, ValueError) as err:
            raise CommandError(str(err)) from None
        print(f"wrote {path}")
        if args.publish:
            try:
                readme = None if args.readme == "none" else args.readme
                sections = args.sections_in
                if sections is None:
                    recipes = Path(readme or "README.md").resolve().parent / "recipes"
                    sections = sorted(recipes.glob("*/README.md"))
                written = publish_report(path.parent, args.publish, readme, sections)
            except (OSError, ValueError) as err:
                raise CommandError(str(err)) from None
            print(
                f"published {len(written)} files: "
                + ", ".join(
                    dict.fromkeys(
                        str(p.parent if p.suffix == ".png" else p) for p in written
                    )
                )  # fmt: skip
            )
        return 0

    return run


def _task_view(folders: list, tasks: list, out: str | None) -> Path:
    """``xlt report STUDY --task ...``: :func:`~xlt_plugin.study.runner.task_view`."""
    from xlt_plugin.study.runner import task_view

    if len(folders) != 1:
        raise ValueError("--task reports one study folder: give one RUN_DIR")
    study = folders[0]
    default = study.parent / f"{study.name}-{'-'.join(tasks)}"
    return task_view(study, tasks, out or default)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``xlt`` parser with every registered subcommand.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each subcommand sets ``args.run``.

    Example
    -------
    >>> args = build_parser().parse_args(
    ...     ["synth", "--lang", "es", "--out", "x", "--utterances", "5"]
    ... )
    >>> args.command, args.lang, args.utterances
    ('synth', 'es', 5)
    """
    from xlt_plugin import __version__

    parser = argparse.ArgumentParser(
        prog="xlt",
        description="Cross-language transfer learning for CTC speech recognition.",
    )
    parser.add_argument("--version", action="version", version=f"xlt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help, setup) in _COMMANDS.items():
        child = sub.add_parser(name, help=help, description=inspect.getdoc(setup))
        child.set_defaults(run=setup(child))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``xlt`` with ``argv`` (default: ``sys.argv[1:]``).

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments, without the program name.

    Returns
    -------
    int
        Exit status: 0 on success, 1 on an error the user can fix (printed
        as one line on stderr), 2 on a usage error, 130 when interrupted.

    Example
    -------
    >>> main(["synth", "--lang", "xx", "--out", "unused", "--utterances", "5"])
    1
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help/--version (0) and on usage errors (2).
        return exit_.code if isinstance(exit_.code, int) else 2
    previous = _catch_sigterm()
    try:
        return args.run(args)
    except (CommandError, MissingExtraError) as err:
        print(f"xlt {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"xlt {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _catch_sigterm():
    """Turn SIGTERM into KeyboardInterrupt, so commands clean up as on Ctrl-C.

    Returns the previous handler, or None where signals cannot be set (not
    the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


if __name__ == "__main__":
    sys.exit(main())
