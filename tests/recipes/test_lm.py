"""The ARPA n-gram estimator (interpolated modified Kneser-Ney), its reader, and
the Domain recipe's beam search + LM evaluation."""

import csv
import json
import math
import runpy
import sys

import numpy as np
import pytest
from conftest import REPO

from xlt_plugin.cli import main
from xlt_plugin.decode.lm import (
    BOS,
    EOS,
    UNK,
    ArpaError,
    ArpaLM,
    build_arpa,
    estimate_kneser_ney,
    read_sentences,
)
from xlt_plugin.synth.texts import SentenceGenerator, domain_sentence
from xlt_plugin.tokens import normalize_text


def _domain(name, count, seed):
    return [
        normalize_text(domain_sentence(name, np.random.default_rng([seed, i])), "en")
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def medical(tmp_path_factory):
    """A 3-gram model of medical sentences written as ARPA; held-out texts."""
    train = _domain("medical", 300, seed=1)
    folder = tmp_path_factory.mktemp("lm")
    text = folder / "medical.txt"
    text.write_text("\n".join(train) + "\n", encoding="utf-8")
    arpa = folder / "medical.arpa"
    build_arpa(text, arpa, order=3)
    general = SentenceGenerator("en", 3000)
    held_out = {
        "medical": [s for s in _domain("medical", 60, seed=2) if s not in train],
        "atc": _domain("atc", 60, seed=3),
        "general": [
            normalize_text(general.sentence(np.random.default_rng([4, i])), "en")
            for i in range(60)
        ],
    }
    return {"arpa": arpa, "train": train, "held_out": held_out}


def _contexts(lm):
    """Every context the model stores (n-grams below the top order), and ()."""
    yield ()
    for n in range(1, lm.order):
        for gram in lm.probs[n - 1]:
            if gram[-1] != EOS:  # nothing follows </s>
                yield gram


def test_every_context_sums_to_one(medical):
    lm = ArpaLM.read(medical["arpa"])
    vocabulary = lm.vocabulary
    assert BOS not in vocabulary and EOS in vocabulary and UNK in vocabulary
    checked = 0
    for context in _contexts(lm):
        total = sum(10 ** lm.log10_prob(word, context) for word in vocabulary)
        assert total == pytest.approx(1.0, abs=2e-5), context
        checked += 1
    assert checked == 1 + sum(
        1 for n in range(1, lm.order) for g in lm.probs[n - 1] if g[-1] != EOS
    )
    assert checked > 500


def test_tiny_text_with_degenerate_counts_still_normalises():
    """No n-gram seen 2-4 times: the discounts fall back and stay proper."""
    lm = estimate_kneser_ney(["take two tablets daily", "stop the infusion"], order=3)
    for d1, d2, d3 in lm.discounts:
        assert 0 < d1 < 1 and 0 < d2 < 2 and 0 < d3 < 3
    for context in _contexts(lm):
        total = sum(10 ** lm.log10_prob(w, context) for w in lm.vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9)


def test_modified_discounts_on_real_counts(medical):
    lm = estimate_kneser_ney(medical["train"], order=3)
    top = lm.discounts[-1]
    assert len(set(top)) == 3, "three distinct discounts at the top order"
    assert 0 < top[0] < 1 < top[1] < 2 and 0 < top[2] < 3


def test_in_domain_perplexity_is_lower(medical):
    lm = ArpaLM.read(medical["arpa"])
    held = medical["held_out"]
    assert len(held["medical"]) > 20
    ppl = {name: lm.perplexity(sentences) for name, sentences in held.items()}
    assert ppl["medical"] < ppl["atc"] and ppl["medical"] < ppl["general"], ppl
    assert ppl["medical"] < 0.2 * ppl["general"], ppl


def test_continuation_counts_make_it_kneser_ney():
    """'francisco' is frequent but only after 'san': as a unigram it must be
    less likely than 'city', which is as frequent but follows many words."""
    text = ["san francisco is big"] * 6
    text += [f"{w} city is big" for w in ("old", "new", "my", "that", "a", "one")]
    lm = estimate_kneser_ney(text, order=2)
    assert lm.log10_prob("francisco", ["big"]) < lm.log10_prob("city", ["big"])
    # Yet after 'san' it is by far the best guess.
    assert lm.log10_prob("francisco", ["san"]) > math.log10(0.8)


def test_arpa_file_is_well_formed(medical):
    lines = medical["arpa"].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "\\data\\" and lines[-1] == "\\end\\"
    declared = {int(x[6:].split("=")[0]): int(x.split("=")[1]) for x in lines[1:4]}
    sections, current = {}, None
    for line in lines:
        if line.startswith("\\") and line.endswith("-grams:"):
            current = int(line[1:-7])
            sections[current] = []
        elif current and line and not line.startswith("\\"):
            sections[current].append(line.split("\t"))
    assert {n: len(v) for n, v in sections.items()} == declared
    unigrams = {parts[1]: parts for parts in sections[1]}
    assert float(unigrams[BOS][0]) == -99 and EOS in unigrams and UNK in unigrams
    assert all(len(p) == 3 for n in (1, 2) for p in sections[n])  # with backoff
    assert all(len(p) == 2 for p in sections[3])  # top order: none
    grams = {n: {tuple(p[1].split()) for p in sections[n]} for n in sections}
    for n in (2, 3):
        for gram in grams[n]:  # prefix and suffix are stored one order down
            assert gram[:-1] in grams[n - 1] and gram[1:] in grams[n - 1], gram


def test_kenlm_reads_the_file_and_agrees(medical):
    kenlm = pytest.importorskip("kenlm")  # optional extra `lm`
    model = kenlm.Model(str(medical["arpa"]))
    ours = ArpaLM.read(medical["arpa"])
    assert model.order == 3
    for sentence in medical["held_out"]["medical"][:10] + ["unseen words here"]:
        expected, _ = ours.sentence_log10(sentence)
        assert model.score(sentence, bos=True, eos=True) == pytest.approx(
            expected, abs=1e-4
        )


def test_bad_files_name_the_problem(tmp_path):
    truncated = tmp_path / "cut.arpa"
    truncated.write_text(
        "\\data\\\nngram 1=3\n\n\\1-grams:\n-0.5\ta\t0\n-99\t<s>\t0\n\\end\\\n"
    )
    with pytest.raises(ArpaError, match=r"cut.arpa.*declares 3 1-grams.*lists 2"):
        ArpaLM.read(truncated)
    garbled = tmp_path / "bad.arpa"
    garbled.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nhigh\ta\n\\end\\\n")
    with pytest.raises(ArpaError, match=r"bad.arpa:5: not a number"):
        ArpaLM.read(garbled)
    with pytest.raises(ValueError, match="sentence markers"):
        estimate_kneser_ney(["<s> hello </s>"])
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    with pytest.raises(ValueError, match="holds no sentence"):
        read_sentences(blank)


def test_cli_builds_a_model(tmp_path, capsys):
    text = tmp_path / "s.txt"
    text.write_text("Take TWO tablets.\nTake one tablet!\n", encoding="utf-8")
    out = tmp_path / "d.arpa"
    code = main(["lm", "--text", str(text), "--order", "2", "--out", str(out),
                 "--language", "en"])  # fmt: skip
    assert code == 0
    assert "1-grams 8, 2-grams 7" in capsys.readouterr().out
    assert "take" in ArpaLM.read(out) and "Take" not in ArpaLM.read(out)

    code = main(["lm", "--text", str(tmp_path / "nope.txt"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "nope.txt does not exist" in err[0]


def test_domain_recipe_adds_a_beam_lm_test_line(
    en_base, corpora, tmp_path, monkeypatch
):
    """Domain recipe in debug mode: greedy lines, then beam+LM lines per domain,
    with an LM built from the training transcripts only."""
    data = corpora("en", 12, seed=7, domain="medical")
    out = tmp_path / "out"
    script = REPO / "recipes" / "Domain" / "train.py"
    argv = [
        str(script),
        str(REPO / "recipes" / "Domain" / "hparams" / "xfer.yaml"),
        f"--data_folder={data}",
        f"--pretrained_path={en_base / 'model'}",
        f"--output_folder={out}",
        "--batch_size=4",
        "--lm_order=2",
        "--lm_beam=4",
        "--debug",
        "--debug_batches=2",
        "--debug_epochs=1",
        "--noprogressbar",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")

    records = [json.loads(x) for x in (out / "metrics.jsonl").open()]
    tests = [r for r in records if r["stage"] == "test"]
    assert [(r["zero_shot"], r.get("decoder")) for r in tests] == [
        (True, None),
        (False, None),
        (False, "beam+lm"),
    ]
    lm_line = tests[-1]
    assert lm_line["test_set"] == tests[1]["test_set"] == "medical"
    assert lm_line["beam"] == 4 and lm_line["lm_order"] == 2
    assert 0 <= lm_line["CER"] and 0 <= lm_line["WER"]

    lm = ArpaLM.read(lm_line["lm"])
    assert lm.order == 2
    manifest = {}
    for split in ("train", "test"):
        with open(out / "save" / f"{split}.csv", encoding="utf-8", newline="") as f:
            manifest[split] = [row["wrd"] for row in csv.DictReader(f)]
    # Exactly the model of the training transcripts: the test ones (all new
    # sentences) would have changed it.
    assert not set(manifest["test"]) & set(manifest["train"])
    expected = estimate_kneser_ney(manifest["train"], order=2)
    assert lm.counts() == expected.counts()
    for n in (1, 2):
        for gram, log10 in expected.probs[n - 1].items():
            assert lm.probs[n - 1][gram] == pytest.approx(log10, abs=1e-5)
