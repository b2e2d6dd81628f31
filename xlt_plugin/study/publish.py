"""Publish a finished report: copy it into the docs, refresh the README's block.

``xlt report STUDY --publish docs/study-full`` writes the report as usual, then
copies ``REPORT.md`` and ``figures/`` into ``docs/study-full/`` under a line that
says where and when they were made, and replaces the README's text between
``<!-- study-full:begin -->`` and ``<!-- study-full:end -->`` (the folder's name)
with the report's claims and tables; a block ``<!-- study-full/TITLE:begin -->``
in the README or a recipe's README gets the report's section ``TITLE``.
Published numbers are then made by a command, never copied by hand.

Authors
 * xlt_plugin contributors 2025
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from pathlib import Path

#: Report sections left out of the README block (the full report has them).
LEFT_OUT = ("Setup",)


def code_version(folder: str | Path = ".") -> str:
    """The git commit of ``folder`` (``+`` local changes), or ``unknown``.

    Arguments
    ---------
    folder : path
        A folder inside a git checkout.

    Returns
    -------
    str

    Example
    -------
    >>> code_version("/") in ("unknown",) or len(code_version("/")) >= 7
    True
    """

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+" if dirty else "")


def readme_block(report_text: str, figures_prefix: str) -> str:
    """The README's block for a report: its claims and tables, headings in bold.

    Arguments
    ---------
    report_text : str
        A ``REPORT.md`` written by :func:`xlt_plugin.study.report.write_report`.
    figures_prefix : str
        Where the published figures are, seen from the README
        (e.g. ``docs/study-full/figures``).

    Returns
    -------
    str
        From the first ``##`` section to the end, without the sections named in
        :data:`LEFT_OUT`; ``## Title`` becomes ``**Title**:``.

    Example
    -------
    >>> text = "# Study\\n\\nintro\\n\\n## Claims\\n\\n- holds\\n\\n"
    >>> text += "![curve](figures/a.png)\\n\\n## Setup\\n\\nseeds"
    >>> print(readme_block(text, "docs/x/figures"))
    **Claims**:
    <BLANKLINE>
    - holds
    <BLANKLINE>
    ![curve](docs/x/figures/a.png)
    """
    sections = re.split(r"^## ", report_text, flags=re.MULTILINE)[1:]
    kept = []
    for section in sections:
        title, _, body = section.partition("\n")
        if title.strip() in LEFT_OUT:
            continue
        body = body.replace("](figures/", f"]({figures_prefix}/")
        kept.append(f"**{title.strip()}**:\n{body.rstrip()}")
    return "\n\n".join(kept)


def replace_block(text: str, name: str, block: str, where: str = "README") -> str:
    """``text`` with the lines between ``name``'s markers replaced by ``block``.

    Arguments
    ---------
    text : str
        The README.
    name : str
        The markers are ``<!-- name:begin -->`` and ``<!-- name:end -->``.
    block : str
        The new text between them.
    where : str
        The file's name, for the error message.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        When the markers are missing, repeated or out of order.

    Example
    -------
    >>> readme = "a\\n<!-- s:begin -->\\nold\\n<!-- s:end -->\\nb\\n"
    >>> print(replace_block(readme, "s", "new"), end="")
    a
    <!-- s:begin -->
    new
    <!-- s:end -->
    b
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    # Markers are lines of their own: prose that names them (in backticks) is
    # not a marker.
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(
            f"{where} needs exactly one '{begin}' line and one '{end}' line after "
            f"it, around the text to replace (found {len(starts)} and "
            f"{len(ends)}): add them where the published numbers go."
        )
    return "\n".join([*lines[: starts[0] + 1], block.strip(), *lines[ends[0] :]])


def report_sections(report_text: str) -> dict[str, str]:
    """A report's ``## `` sections and ``### `` subsections: title -> body
    (without the title line; a section's body holds its subsections).

    Example
    -------
    >>> report_sections("# S\\n\\n## Claims\\n\\n- holds\\n\\n### When\\n\\nnow\\n")
    {'Claims': '\\n- holds\\n\\n### When\\n\\nnow', 'When': '\\nnow'}
    """
    sections = {}
    for level in ("## ", "### "):
        # A part runs to the next heading of its level or a higher one.
        stop = r"^## " if level == "## " else r"^##?#? "
        for part in re.split(rf"^{level}", report_text, flags=re.MULTILINE)[1:]:
            title, _, body = part.partition("\n")
            body = re.split(stop, body, maxsplit=1, flags=re.MULTILINE)[0]
            sections.setdefault(title.strip(), body.rstrip())
    return sections


def refresh_sections(
    text: str, where: Path, report_text: str, dest: Path
) -> tuple[str, list[str]]:
    """``text`` with every ``<!-- DEST/TITLE:begin -->`` block refreshed.

    Each block gets the report's section ``TITLE`` (figures linked from
    ``where``'s folder) and a link to the published report: a recipe README
    carries its own table, made by the same command as the report.

    Arguments
    ---------
    text : str
        The file's text.
    where : Path
        The file (for links relative to it, and for errors).
    report_text : str
        The report.
    dest : Path
        The docs folder the report is published to; its name opens the markers.

    Returns
    -------
    (str, list of str)
        The new text and the titles refreshed.

    Example
    -------
    >>> doc = "x\\n<!-- full/Claims:begin -->\\nold\\n<!-- full/Claims:end -->\\n"
    >>> new, titles = refresh_sections(doc, Path("README.md"),
    ...                                "# S\\n\\n## Claims\\n\\n- holds\\n",
    ...                                Path("docs/full"))
    >>> print(new, end="")
    x
    <!-- full/Claims:begin -->
    - holds
    <BLANKLINE>
    From [docs/full/REPORT.md](docs/full/REPORT.md).
    <!-- full/Claims:end -->
    """
    marker = re.compile(
        rf"^\s*<!-- {re.escape(dest.name)}/(.+?):begin -->\s*$", re.MULTILINE
    )
    titles = list(dict.fromkeys(marker.findall(text)))
    if not titles:
        return text, []
    sections = report_sections(report_text)
    relative = Path(os.path.relpath(dest.resolve(), where.parent.resolve()))
    for title in titles:
        if title not in sections:
            raise ValueError(
                f"{where} asks for the section '{title}', which the report does not "
                f"have (its sections: {', '.join(sections)}): fix the marker."
            )
        body = sections[title].replace(
            "](figures/", f"]({relative.as_posix()}/figures/"
        )
        link = (relative / "REPORT.md").as_posix()
        body = f"{body.strip()}\n\nFrom [{link}]({link})."
        text = replace_block(text, f"{dest.name}/{title}", body, str(where))
    return text, titles


def publish_report(
    report_dir: str | Path,
    dest: str | Path,
    readme: str | Path | None = None,
    section_files: list[str | Path] = (),
) -> list[Path]:
    """Copy ``REPORT.md`` and ``figures/`` into ``dest``; refresh ``readme``'s block.

    Arguments
    ---------
    report_dir : path
        The folder holding the written ``REPORT.md`` (and ``figures/``).
    dest : path
        The docs folder (created; its ``figures/`` is replaced). Its name names
        the README's markers.
    readme : path, optional
        The README to refresh; None leaves every README alone.
    section_files : list of paths
        Files (e.g. the recipes' READMEs) whose ``<!-- DEST/TITLE:begin -->``
        blocks get the report's section ``TITLE`` (:func:`refresh_sections`);
        the README's own such blocks are refreshed too.

    Returns
    -------
    list of Path
        The files written.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "study" / "figures").mkdir(parents=True)
    >>> report = "# S\\n\\n## Claims\\n\\n- holds\\n"
    >>> _ = (root / "study" / "REPORT.md").write_text(report)
    >>> _ = (root / "README.md").write_text(
    ...     "top\\n<!-- full:begin -->\\nold\\n<!-- full:end -->\\n")
    >>> docs = root / "docs" / "full"
    >>> written = publish_report(root / "study", docs, root / "README.md")
    >>> print((root / "README.md").read_text(), end="")
    top
    <!-- full:begin -->
    **Claims**:
    <BLANKLINE>
    - holds
    <BLANKLINE>
    The full report: [docs/full/REPORT.md](docs/full/REPORT.md).
    <!-- full:end -->
    """
    report_dir, dest = Path(report_dir), Path(dest)
    report = report_dir / "REPORT.md"
    if not report.is_file():
        raise ValueError(f"{report} is missing: write the report before publishing it.")
    text = report.read_text(encoding="utf-8")
    readme_text = None
    if readme is not None:
        readme = Path(readme)
        readme_text = readme.read_text(encoding="utf-8")
        relative = Path(os.path.relpath(dest.resolve(), readme.parent.resolve()))
        block = readme_block(text, (relative / "figures").as_posix())
        link = (relative / "REPORT.md").as_posix()
        block += f"\n\nThe full report: [{link}]({link})."
        # Checked before anything is written: a README without markers leaves
        # the docs folder as it was. One with only section blocks
        # (DEST/TITLE) gets those.
        readme_text, titles = refresh_sections(readme_text, readme, text, dest)
        whole = f"<!-- {dest.name}:begin -->"
        if not titles or any(line.strip() == whole for line in readme_text.split("\n")):
            readme_text = replace_block(readme_text, dest.name, block, str(readme))
    others = {}
    for path in map(Path, section_files):
        if readme is not None and path.resolve() == readme.resolve():
            continue
        new, titles = refresh_sections(
            path.read_text(encoding="utf-8"), path, text, dest
        )
        if titles:
            others[path] = new
    dest.mkdir(parents=True, exist_ok=True)
    title, _, rest = text.partition("\n")
    stamp = (
        f"> Published by `xlt report --publish` from `{report_dir}` on "
        f"{datetime.date.today().isoformat()} (xlt_plugin at commit "
        f"{code_version(Path(__file__).parent)}); the run folders it names stay "
        "on the machine that ran it."
    )
    (dest / "REPORT.md").write_text(f"{title}\n\n{stamp}\n{rest}", encoding="utf-8")
    written = [dest / "REPORT.md"]
    if (report_dir / "figures").is_dir():
        shutil.rmtree(dest / "figures", ignore_errors=True)
        shutil.copytree(report_dir / "figures", dest / "figures")
        written += sorted((dest / "figures").rglob("*.png"))
    if readme_text is not None:
        readme.write_text(readme_text, encoding="utf-8")
        written.append(readme)
    for path, new in others.items():
        path.write_text(new, encoding="utf-8")
        written.append(path)
    return written
