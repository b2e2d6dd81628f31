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
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["main", "build_parser", "command", "CommandError"]

Runner = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Runner]]] = {}


class CommandError(Exception):
    """A problem the user can fix; ``main`` prints it as one line."""


def command(name: str, help: str) -> Callable:
    """Register a subcommand.

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
    """``xlt synth``: the embedded corpus (see ``xlt_plugin.data.synth``)."""
    parser.description = (
        "Synthesize speech with espeak-ng and write it exactly like a Common Voice "
        "release: DIR/clips/*.mp3 (16 kHz mono) and train/dev/test/validated.tsv "
        "with the v17 columns. The same arguments and seed give the same corpus."
    )
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from xlt_plugin.data.espeak import EspeakError
        from xlt_plugin.data.synth import SynthError, synthesize_corpus

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
        return 0

    return run


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
        child = sub.add_parser(name, help=help)
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
    except CommandError as err:
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
