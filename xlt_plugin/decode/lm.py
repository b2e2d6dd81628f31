"""Word n-gram language models in ARPA format: estimate, write, read, score.

The domain recipe fuses a word n-gram model into CTC beam search (shallow
fusion). PyPI's ``kenlm`` queries ARPA files but cannot build them (its
``lmplz`` is a separate C++ program), so this module estimates one itself:
interpolated modified Kneser-Ney (Chen & Goodman, 1998), as ``lmplz`` does.

- Counts: the highest order uses raw counts; lower orders use continuation
  counts (how many distinct words precede the n-gram), except n-grams that start
  with ``<s>``, which nothing can precede and which keep their raw counts.
- Discounts: three per order (for counts 1, 2 and 3+) from that order's
  count-of-counts. On very small texts those statistics are degenerate (no
  n-gram seen twice, ...); an order whose discounts fall outside ``(0, k)`` uses
  plain absolute discounting with ``D = n1 / (n1 + 2 n2)`` instead.
- Interpolation: ``p(w|h) = (a(hw) - D) / a(h.) + gamma(h) p(w|h')`` down to a
  uniform distribution over the vocabulary (``</s>`` and ``<unk>`` included).
  In ARPA form ``gamma(h)`` is exactly the backoff weight of ``h``, so every
  context's distribution sums to one.

:class:`ArpaLM` reads any ARPA file (this module's, KenLM's, SRILM's) and
scores sentences in pure Python, so decoding with an LM works without
``kenlm``; with ``kenlm`` installed the decoder uses it for speed.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BOS",
    "EOS",
    "UNK",
    "ArpaLM",
    "ArpaError",
    "build_arpa",
    "estimate_kneser_ney",
    "read_sentences",
]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
#: log10 probability written for ``<s>``, which is never predicted (ARPA custom).
NEVER = -99.0


class ArpaError(ValueError):
    """A malformed ARPA file; the message names the file and the line."""


def read_sentences(path: str | os.PathLike, language: str | None = None) -> list:
    """Sentences of a text file (one per line) as lists of words.

    Arguments
    ---------
    path : path
        UTF-8 text, one sentence per line; blank lines are ignored.
    language : str, optional
        A Common Voice locale: lines are normalised like the model's transcripts
        (:func:`xlt_plugin.tokens.normalize_text`), so LM words match decoded
        words. Leave it out for text that already is (e.g. a manifest's ``wrd``).

    Returns
    -------
    list of list of str

    Example
    -------
    >>> p = getfixture("tmp_path") / "t.txt"
    >>> _ = p.write_text("The cat, sat.\\n\\nA dog\\n", encoding="utf-8")
    >>> read_sentences(p, language="en")
    [['the', 'cat', 'sat'], ['a', 'dog']]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist (a text file, one sentence a line)"
        )
    normalize = None
    if language:
        from xlt_plugin.tokens import normalize_text

        def normalize(line: str) -> str:
            return normalize_text(line, language)

    sentences = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            text = normalize(line) if normalize else line
            words = text.split()
            if words:
                sentences.append(words)
    if not sentences:
        raise ValueError(f"{path} holds no sentence: write one sentence per line")
    return sentences


def _as_words(sentence: str | Sequence[str]) -> list[str]:
    words = sentence.split() if isinstance(sentence, str) else list(sentence)
    reserved = {BOS, EOS} & set(words)
    if reserved:
        raise ValueError(
            f"sentence {' '.join(words)!r} contains {sorted(reserved)}: the "
            "sentence markers are added by the estimator; remove them"
        )
    return words


def _ngram_counts(sentences: Iterable, order: int) -> list[Counter]:
    """Raw counts of every n-gram (n <= order) that predicts a word or ``</s>``."""
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        tokens = [BOS, *_as_words(sentence), EOS]
        for i in range(1, len(tokens)):
            for n in range(1, min(order, i + 1) + 1):
                counts[n - 1][tuple(tokens[i - n + 1 : i + 1])] += 1
    return counts


def _adjusted_counts(counts: list[Counter]) -> list[Counter]:
    """Kneser-Ney counts: continuation counts below the highest order."""
    order = len(counts)
    adjusted = [Counter() for _ in range(order)]
    adjusted[-1] = Counter(counts[-1])
    for n in range(order - 1, 0, -1):  # adjusted[n - 1] holds n-grams
        left_extensions = Counter(gram[1:] for gram in counts[n])
        for gram, raw in counts[n - 1].items():
            adjusted[n - 1][gram] = raw if gram[0] == BOS else left_extensions[gram]
    return adjusted


def _discounts(adjusted: Counter) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) of one order."""
    n = Counter(adjusted.values())  # n[k]: n-grams seen exactly k times
    n1, n2, n3, n4 = (n.get(k, 0) for k in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    try:
        found = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    except ZeroDivisionError:
        found = (-1.0, -1.0, -1.0)
    if all(0 < d < k for k, d in enumerate(found, start=1)):
        return found
    # Degenerate count-of-counts (tiny text): plain absolute discounting.
    d = min(max(y, 0.1), 0.9)
    return (d, d, d)


def estimate_kneser_ney(sentences: Iterable, order: int = 3) -> ArpaLM:
    """Estimate an interpolated modified Kneser-Ney n-gram model.

    Arguments
    ---------
    sentences : iterable of str or list of str
        Training sentences (a string is split on whitespace).
    order : int
        The n of the n-gram model (>= 1).

    Returns
    -------
    ArpaLM
        Call ``.write(path)`` for an ARPA file.

    Example
    -------
    >>> lm = estimate_kneser_ney(["a b", "a c", "b a"], order=2)
    >>> lm.counts()
    [6, 8]
    >>> round(sum(10 ** lm.log10_prob(w, ["a"]) for w in lm.vocabulary), 6)
    1.0
    """
    if int(order) < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    order = int(order)
    counts = _ngram_counts(sentences, order)
    if not counts[0]:
        raise ValueError("no sentence to estimate a language model from")
    adjusted = _adjusted_counts(counts)
    vocabulary = {gram[0] for gram in adjusted[0]} | {UNK}
    probs: list[dict] = [dict() for _ in range(order)]
    gammas: list[dict] = [dict() for _ in range(order)]  # by context length
    discounts = []
    for n in range(1, order + 1):
        d1, d2, d3 = _discounts(adjusted[n - 1])
        discounts.append((d1, d2, d3))
        # Per context: total count and the discount mass set free.
        total: dict[tuple, float] = defaultdict(float)
        freed: dict[tuple, float] = defaultdict(float)
        for gram, a in adjusted[n - 1].items():
            total[gram[:-1]] += a
            freed[gram[:-1]] += d1 if a == 1 else d2 if a == 2 else d3
        for context in total:
            gammas[n - 1][context] = freed[context] / total[context]
        for gram, a in adjusted[n - 1].items():
            context = gram[:-1]
            discount = d1 if a == 1 else d2 if a == 2 else d3
            if n == 1:
                lower = 1.0 / len(vocabulary)
            else:
                lower = probs[n - 2][gram[1:]]
            probs[n - 1][gram] = (a - discount) / total[context] + gammas[n - 1][
                context
            ] * lower
    if (UNK,) not in probs[0]:
        probs[0][(UNK,)] = gammas[0][()] / len(vocabulary)
    log_probs = [{g: math.log10(p) for g, p in level.items()} for level in probs]
    log_probs[0][(BOS,)] = NEVER
    backoffs: list[dict] = [dict() for _ in range(order)]
    for n in range(1, order):
        for context, gamma in gammas[n].items():
            backoffs[n - 1][context] = math.log10(gamma)
    return ArpaLM(order=order, probs=log_probs, backoffs=backoffs, discounts=discounts)


@dataclass
class ArpaLM:
    """A backoff n-gram model as in an ARPA file (log10 probabilities).

    Arguments
    ---------
    order : int
        The highest n.
    probs : list of dict
        ``probs[n - 1][ngram] = log10 p(last word | the others)``.
    backoffs : list of dict
        ``backoffs[n - 1][ngram] = log10`` backoff weight of ``ngram`` as a
        context (absent: 0).
    discounts : list of tuple, optional
        The estimator's (D1, D2, D3+) per order, for reports.

    Example
    -------
    >>> lm = estimate_kneser_ney(["the cat sat", "the dog sat"], order=3)
    >>> path = lm.write(getfixture("tmp_path") / "lm.arpa")
    >>> again = ArpaLM.read(path)
    >>> again.order, again.counts() == lm.counts()
    (3, True)
    >>> again.perplexity(["the cat sat"]) < again.perplexity(["sat the cat"])
    True
    """

    order: int
    probs: list[dict]
    backoffs: list[dict]
    discounts: list[tuple] = field(default_factory=list)

    @property
    def vocabulary(self) -> list[str]:
        """Words the model can predict (``<s>`` excluded), sorted."""
        return sorted(g[0] for g, p in self.probs[0].items() if p > NEVER)

    def __contains__(self, word: str) -> bool:
        return (word,) in self.probs[0]

    def counts(self) -> list[int]:
        """Number of n-grams per order (the ARPA header)."""
        return [len(level) for level in self.probs]

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """``log10 p(word | context)`` by the ARPA backoff rule.

        Arguments
        ---------
        word : str
            The predicted word (``</s>`` for the end); unknown words are
            ``<unk>``.
        context : sequence of str
            The preceding words, oldest first (``<s>`` for a sentence start);
            only the last ``order - 1`` matter.

        Returns
        -------
        float
        """
        if (word,) not in self.probs[0]:
            word = UNK
            if (UNK,) not in self.probs[0]:
                raise KeyError(f"{word!r} is unknown and the model has no <unk>")
        context = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        penalty = 0.0
        while True:
            gram = (*context, word)
            found = self.probs[len(gram) - 1].get(gram)
            if found is not None:
                return found + penalty
            penalty += self.backoffs[len(context) - 1].get(context, 0.0)
            context = context[1:]

    def sentence_log10(self, sentence: str | Sequence[str]) -> tuple[float, int]:
        """Total log10 probability of a sentence (with ``</s>``) and its tokens."""
        words = _as_words(sentence)
        history = [BOS]
        total = 0.0
        for word in [*words, EOS]:
            total += self.log10_prob(word, history)
            history.append(word)
        return total, len(words) + 1

    def perplexity(self, sentences: Iterable) -> float:
        """Perplexity per token (words and ``</s>``) over ``sentences``."""
        total, tokens = 0.0, 0
        for sentence in sentences:
            log10, n = self.sentence_log10(sentence)
            total += log10
            tokens += n
        if tokens == 0:
            raise ValueError("perplexity of no sentence")
        return 10 ** (-total / tokens)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the model as an ARPA file (atomically).

        Arguments
        ---------
        path : path
            Destination (``.arpa``).

        Returns
        -------
        Path
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with tmp.open("w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n, count in enumerate(self.counts(), start=1):
                f.write(f"ngram {n}={count}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                backoffs = self.backoffs[n - 1] if n < self.order else {}
                for gram in sorted(self.probs[n - 1]):
                    line = f"{self.probs[n - 1][gram]:.7g}\t{' '.join(gram)}"
                    if n < self.order:
                        line += f"\t{backoffs.get(gram, 0.0):.7g}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> ArpaLM:
        """Read an ARPA file.

        Arguments
        ---------
        path : path
            The ARPA file.

        Returns
        -------
        ArpaLM
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; build one with `xlt lm --text FILE "
                "--order 3 --out FILE.arpa`"
            )
        declared: dict[int, int] = {}
        probs: list[dict] = []
        backoffs: list[dict] = []
        section = None  # None: before \data\; 0: header; n: n-grams
        with path.open(encoding="utf-8") as f:
            for number, raw in enumerate(f, start=1):
                line = raw.strip()

                def fail(why: str, number=number, raw=raw):
                    raise ArpaError(f"{path}:{number}: {why}: {raw.rstrip()!r}")

                if not line:
                    continue
                if line == "\\data\\":
                    section = 0
                elif line == "\\end\\":
                    break
                elif line.startswith("\\") and line.endswith("-grams:"):
                    try:
                        section = int(line[1 : -len("-grams:")])
                    except ValueError:
                        fail("bad section header")
                    if section not in declared:
                        fail("section not declared in \\data\\")
                    while len(probs) < section:
                        probs.append({})
                        backoffs.append({})
                elif section == 0:
                    if not line.startswith("ngram ") or "=" not in line:
                        fail("expected `ngram N=COUNT`")
                    n, count = line[len("ngram ") :].split("=")
                    declared[int(n)] = int(count)
                elif section:
                    parts = line.split()
                    n = section
                    if len(parts) not in (n + 1, n + 2):
                        fail(f"a {n}-gram line needs log10 prob, {n} words, [backoff]")
                    try:
                        gram = tuple(parts[1 : n + 1])
                        probs[n - 1][gram] = float(parts[0])
                        if len(parts) == n + 2:
                            backoffs[n - 1][gram] = float(parts[-1])
                    except ValueError:
                        fail("not a number")
                elif section is None:
                    continue  # text before \data\ is allowed
        if not declared:
            raise ArpaError(f"{path}: no \\data\\ section: not an ARPA file")
        order = max(declared)
        for n, count in declared.items():
            found = len(probs[n - 1]) if n <= len(probs) else 0
            if found != count:
                raise ArpaError(
                    f"{path}: \\data\\ declares {count} {n}-grams but the file "
                    f"lists {found} (truncated or edited file?)"
                )
        return cls(order=order, probs=probs, backoffs=backoffs)


def build_arpa(
    text: str | os.PathLike | Iterable,
    out: str | os.PathLike,
    order: int = 3,
    language: str | None = None,
) -> ArpaLM:
    """Estimate a Kneser-Ney model from a text file (or sentences) and write it.

    Arguments
    ---------
    text : path or iterable
        A text file with one sentence per line, or the sentences themselves.
    out : path
        The ARPA file to write.
    order : int
        n-gram order.
    language : str, optional
        Normalise a text file's lines for this locale (see
        :func:`read_sentences`).

    Returns
    -------
    ArpaLM

    Example
    -------
    >>> out = getfixture("tmp_path") / "d.arpa"
    >>> lm = build_arpa(["take two tablets", "take one tablet"], out, order=2)
    >>> out.read_text().splitlines()[:3]
    ['\\\\data\\\\', 'ngram 1=8', 'ngram 2=7']
    """
    if isinstance(text, (str, os.PathLike)):
        sentences = read_sentences(text, language)
    else:
        sentences = list(text)
    lm = estimate_kneser_ney(sentences, order)
    lm.write(out)
    return lm
