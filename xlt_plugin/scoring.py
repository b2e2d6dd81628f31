"""Character and word error rates (CER, WER): the one implementation.

Training (:class:`xlt_plugin.brain.CTCTransferBrain`), beam-search evaluation
(:func:`xlt_plugin.decode.transcribe.evaluate_decoder`) and the study's own
evaluations (:mod:`xlt_plugin.study.evaluate`) all score through
:class:`ErrorRates`, so a CER here is the same number everywhere. The edit
distances are SpeechBrain's ``ErrorRateStats``: CER compares the texts
character by character (spaces included), WER word by word (texts split on
whitespace); both are percentages over the whole set (errors summed, then divided
by the reference length summed), not means of per-utterance rates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["ErrorRates", "error_rates"]


class ErrorRates:
    """CER and WER of hypotheses against references, accumulated over batches.

    Arguments
    ---------
    cer_stats, wer_stats : callable, optional
        Factories of the ``speechbrain.utils.metric_stats.ErrorRateStats``-like
        objects that count character and word edits (a recipe's
        ``cer_computer`` / ``error_rate_computer``); SpeechBrain's
        ``ErrorRateStats`` by default.

    Attributes
    ----------
    cer, wer : ErrorRateStats
        The two counters (``wer.write_stats(file)`` writes the per-utterance
        alignments).

    Example
    -------
    >>> scores = ErrorRates()
    >>> scores.append(["a", "b"], ["the cat sat", "a dog"], ["the cat sat", "a dig"])
    >>> scores.summarize()  # 1 of 16 characters, 1 of 5 words
    {'CER': 6.25, 'WER': 20.0}
    """

    def __init__(
        self,
        cer_stats: Callable | None = None,
        wer_stats: Callable | None = None,
    ):
        from speechbrain.utils.metric_stats import ErrorRateStats

        self.cer = (cer_stats or ErrorRateStats)()
        self.wer = (wer_stats or ErrorRateStats)()

    def append(
        self, ids: Sequence, hypotheses: Sequence[str], references: Sequence[str]
    ) -> None:
        """Add a batch of hypothesis and reference texts (one per id)."""
        ids = list(ids)
        self.cer.append(
            ids, [list(h) for h in hypotheses], [list(r) for r in references]
        )
        self.wer.append(
            ids, [h.split() for h in hypotheses], [r.split() for r in references]
        )

    def summarize(self) -> dict[str, float]:
        """``{"CER": percent, "WER": percent}`` over everything appended."""
        return {
            "CER": self.cer.summarize("error_rate"),
            "WER": self.wer.summarize("error_rate"),
        }


def error_rates(
    hypotheses: Sequence[str],
    references: Sequence[str],
    ids: Sequence | None = None,
) -> dict[str, float]:
    """CER and WER (percent) of hypothesis texts against reference texts.

    Arguments
    ---------
    hypotheses : sequence of str
        What a model wrote, one text per utterance.
    references : sequence of str
        The transcripts, in the same order.
    ids : sequence, optional
        Utterance ids (default: positions).

    Returns
    -------
    dict
        ``{"CER": float, "WER": float}``, percentages over the whole set.

    Example
    -------
    >>> scores = error_rates(["kitten", "adiós amigo"], ["sitting", "adios amigo"])
    >>> round(scores["CER"], 2), round(scores["WER"], 2)  # 4 of 18 chars, 2 of 3 words
    (22.22, 66.67)
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references"
        )
    scores = ErrorRates()
    scores.append(
        list(range(len(hypotheses))) if ids is None else ids, hypotheses, references
    )
    return scores.summarize()
