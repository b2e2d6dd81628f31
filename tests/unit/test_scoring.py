"""CER/WER (xlt_plugin.scoring): the numbers SpeechBrain's ErrorRateStats gives."""

import pytest
from speechbrain.utils.metric_stats import ErrorRateStats

from xlt_plugin.scoring import ErrorRates, error_rates


def test_known_strings():
    # kitten -> sitting: 3 character edits of 7; one wrong word of one.
    assert error_rates(["kitten"], ["sitting"]) == {
        "CER": pytest.approx(300 / 7),
        "WER": 100.0,
    }
    assert error_rates(["the cat sat"], ["the cat sat"]) == {"CER": 0.0, "WER": 0.0}
    # Rates are over the whole set, not means of per-utterance rates.
    scores = error_rates(
        ["a b", "the cat sat on the mat"], ["a c", "the cat sat on the mat"]
    )
    assert scores["WER"] == pytest.approx(100 * 1 / 8)
    assert scores["CER"] == pytest.approx(100 * 1 / 25)


def test_whitespace_and_characters():
    # Spaces are characters for CER; WER splits on any whitespace.
    assert error_rates(["ab"], ["a b"])["CER"] == pytest.approx(100 / 3)
    assert error_rates(["a  b"], ["a b"])["WER"] == 0.0
    assert error_rates(["你好"], ["你们好"])["CER"] == pytest.approx(100 / 3)


def test_batches_add_up_like_one_call():
    hyps, refs = (
        ["hola mundo", "adios", "buenas tardes"],
        ["hola mundo", "adiós", "buenas noches"],
    )
    scores = ErrorRates()
    scores.append(["1"], hyps[:1], refs[:1])
    scores.append(["2", "3"], hyps[1:], refs[1:])
    assert scores.summarize() == error_rates(hyps, refs)


def test_same_numbers_as_speechbrain_directly():
    hyps, refs = ["the cat sad", "a dog"], ["the cat sat", "a big dog"]
    cer, wer = ErrorRateStats(), ErrorRateStats()
    cer.append([0, 1], [list(h) for h in hyps], [list(r) for r in refs])
    wer.append([0, 1], [h.split() for h in hyps], [r.split() for r in refs])
    assert error_rates(hyps, refs) == {
        "CER": cer.summarize("error_rate"),
        "WER": wer.summarize("error_rate"),
    }


def test_custom_counters_and_mismatched_lengths():
    made = []

    def counter():
        made.append(ErrorRateStats())
        return made[-1]

    scores = ErrorRates(counter, counter)
    assert [scores.cer, scores.wer] == made
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        error_rates(["a", "b"], ["a"])
