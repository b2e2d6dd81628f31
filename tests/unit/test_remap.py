"""Tests for xlt_plugin.remap: token maps, the head remap and the Pretrainer hook.

The property at the heart of the plugin: for every target token that starts
from one source token, the new head's logit equals the old head's logit on the
same input; for an averaged token it equals the mean of its sources' logits;
the blank logit is kept; fresh rows are new.
"""

import json
import random
import textwrap

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.nnet.linear import Linear as SBLinear

from xlt_plugin.remap import (
    KNOWN_STRATEGIES,
    RemapHeadHook,
    RemapReport,
    TokenMap,
    remap_ctc_head,
    remap_rows,
    token_map,
)
from xlt_plugin.tokens import BLANK, build_char_encoder, load_tokens, save_tokens

EN = [BLANK, " ", "'", *"abcdefghijklmnopqrstuvwxyz"]
ES = [BLANK, " ", *"abcdefghijklmnopqrstuvwxyz", *"áéíñóúü"]
DE = [BLANK, " ", *"abcdefghijklmnopqrstuvwxyz", *"äöüß"]
RU = [BLANK, " ", "'", *"абвгдежзийклмнопрстуфхцчшщъыьэюяё"]
ZH_CN = [BLANK, *"们说发我你好这个来"]
ZH_HK = [BLANK, *"們說發我你好這個嚟佢"]
PIECES = [BLANK, "▁", "▁the", "▁a", "th", "e", "s", "t", "h", "ñ"]

HEAD_KINDS = ("linear", "speechbrain", "conv1d", "nemo_decoder")
N_IN = 12


def make_head(kind: str, n_out: int, n_in: int = N_IN) -> torch.nn.Module:
    if kind == "linear":
        return torch.nn.Linear(n_in, n_out)
    if kind == "speechbrain":
        return SBLinear(input_size=n_in, n_neurons=n_out)
    if kind == "conv1d":
        return torch.nn.Conv1d(n_in, n_out, kernel_size=1)
    # NeMo's ConvASRDecoder keeps its 1x1 conv in a Sequential
    return torch.nn.Sequential(torch.nn.Conv1d(n_in, n_out, kernel_size=1))


def logits(head: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[batch, time, n_in] -> [batch, time, n_out] for every head kind."""
    if isinstance(head, (torch.nn.Conv1d, torch.nn.Sequential)):
        return head(x.transpose(1, 2)).transpose(1, 2)
    return head(x)


def core_params(head: torch.nn.Module):
    layer = next(
        m for m in head.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))
    )
    return layer.weight.detach().reshape(layer.weight.shape[0], -1), layer.bias


# (source, target, strategy, source_blank, target_blank)
SCENARIOS = {
    "en-es": (EN, ES, "exact,fold", 0, 0),
    "en-de": (EN, DE, ["exact", "fold"], 0, 0),
    "en-ru": (EN, RU, "exact,translit", 0, 0),
    "ru-en": (RU, EN, "exact,translit", 0, 0),
    "zh": (ZH_CN, ZH_HK, "exact,opencc", 0, 0),
    "pieces": (EN, PIECES, "exact,fold,pieces", 0, 0),
    "none": (EN, ES, "none", 0, 0),
    "nemo-blank-last": (EN[1:] + [BLANK], ES, "exact,fold", -1, 0),
    "blank-last-both": (EN[1:] + [BLANK], ES[1:] + [BLANK], "exact", -1, -1),
}


def random_scenario(seed: int):
    rng = random.Random(seed)
    pool = list("abcdefghijklmnopñáéüßабвгщжё们們说說' ") + ["▁ab", "▁", "ch", "<unk>"]
    src = [BLANK] + rng.sample(pool, rng.randint(4, 20))
    tgt = [BLANK] + rng.sample(pool, rng.randint(4, 20))
    rng.shuffle(src)
    rng.shuffle(tgt)
    names = rng.sample(KNOWN_STRATEGIES[1:], rng.randint(1, 5))
    return src, tgt, names, src.index(BLANK), tgt.index(BLANK)


ALL_SCENARIOS = list(SCENARIOS.values()) + [random_scenario(s) for s in range(12)]


def check_remap(head, src, tgt, strategy, sb, tb, seed):
    """The property checks; returns the report for further assertions."""
    torch.manual_seed(seed + 1000)  # not the seed the source head was drawn with
    before = {k: v.clone() for k, v in head.state_dict().items()}
    new, report = remap_ctc_head(
        head, src, tgt, strategy=strategy, source_blank=sb, target_blank=tb
    )
    tmap = token_map(src, tgt, strategy, sb, tb)

    # same type, target size, input head untouched
    assert type(new) is type(head) and new is not head
    for k, v in head.state_dict().items():
        assert torch.equal(v, before[k]), k
    w_old, b_old = core_params(head)
    w_new, b_new = core_params(new)
    assert w_new.shape == (len(tgt), w_old.shape[1])

    x = torch.randn(3, 5, N_IN)
    with torch.no_grad():
        old_out, new_out = logits(head, x), logits(new, x)
    assert new_out.shape == (3, 5, len(tgt))

    sb_, tb_ = sb % len(src), tb % len(tgt)
    assert tmap.sources[tb_] == [sb_]
    torch.testing.assert_close(new_out[..., tb_], old_out[..., sb_])
    for t, srcs in enumerate(tmap.sources):
        if t != tb_:
            assert sb_ not in srcs, (tgt[t], srcs)
        if len(srcs) == 1:
            assert torch.equal(w_new[t], w_old[srcs[0]])  # bit-exact copy
            assert torch.equal(b_new[t], b_old[srcs[0]])
            torch.testing.assert_close(new_out[..., t], old_out[..., srcs[0]])
        elif srcs:
            expected = old_out[..., srcs].mean(-1)
            torch.testing.assert_close(new_out[..., t], expected)
        else:
            # fresh: a row unlike every source row
            assert not any(torch.equal(w_new[t], row) for row in w_old)
            assert (w_new[t] - w_old).abs().amax(dim=1).min() > 0

    # report is consistent with the map and adds up
    assert report.n_target == len(tgt) and report.n_source == len(src)
    assert report.blank + report.copied + report.averaged + report.fresh == len(tgt)
    assert sum(report.by_strategy.values()) == len(tgt)
    assert report.fresh == sum(1 for s in tmap.sources if not s)
    assert report.fresh_tokens == [tgt[t] for t, s in enumerate(tmap.sources) if not s]
    assert report.averaged == len(report.averaged_tokens)
    json.dumps(report.as_dict())
    return report


@pytest.mark.parametrize("kind", HEAD_KINDS)
@pytest.mark.parametrize("case", range(len(ALL_SCENARIOS)))
def test_remap_preserves_logits(kind, case):
    src, tgt, strategy, sb, tb = ALL_SCENARIOS[case]
    torch.manual_seed(case)
    head = make_head(kind, len(src))
    check_remap(head, src, tgt, strategy, sb, tb, seed=case)


def test_remap_without_bias_and_frozen_flags():
    head = torch.nn.Linear(N_IN, len(EN), bias=False)
    head.weight.requires_grad_(False)
    new, report = remap_ctc_head(head, EN, ES, "exact,fold")
    assert new.bias is None and not new.weight.requires_grad
    assert torch.equal(new.weight[ES.index("ñ")], head.weight[EN.index("n")])
    assert report.fresh == 0


def test_remap_ctc_head_reads_token_files(tmp_path):
    save_tokens(EN, tmp_path / "en.txt")
    build_char_encoder(["año de"], tmp_path / "es_labels.txt")
    head = SBLinear(input_size=N_IN, n_neurons=len(EN))
    new, report = remap_ctc_head(
        head, tmp_path / "en.txt", tmp_path / "es_labels.txt", "exact,fold"
    )
    es = load_tokens(tmp_path / "es_labels.txt")
    assert new.w.weight.shape[0] == len(es)
    assert report.by_strategy == {"blank": 1, "exact": 5, "fold": 1}


# --------------------------------------------------------------------------
# Concrete maps


def mapped(src, tgt, strategy, token, sb=0, tb=0):
    tmap = token_map(src, tgt, strategy, sb, tb)
    t = tgt.index(token)
    return [src[s] for s in tmap.sources[t]], tmap.how[t]


def test_en_to_es_exact_fold():
    assert mapped(EN, ES, "exact,fold", "ñ") == (["n"], "fold")
    assert mapped(EN, ES, "exact,fold", "á") == (["a"], "fold")
    assert mapped(EN, ES, "exact,fold", "a") == (["a"], "exact")
    assert mapped(EN, ES, "exact,fold", " ") == ([" "], "exact")
    assert mapped(EN, ES, "exact", "ñ") == ([], None)


def test_en_to_de_fold():
    assert mapped(EN, DE, "exact,fold", "ß") == (["s", "s"], "fold")
    assert mapped(EN, DE, "exact,fold", "ü") == (["u"], "fold")
    assert mapped(EN, [BLANK, "Ä"], "exact,fold", "Ä") == (["a"], "fold")
    report = remap_ctc_head(torch.nn.Linear(4, len(EN)), EN, DE, "exact,fold")[1]
    assert report.averaged_tokens == [
        {"token": "ß", "sources": ["s", "s"], "how": "fold"}
    ]


def test_en_to_ru_translit():
    assert mapped(EN, RU, "exact,translit", " ") == ([" "], "exact")
    assert mapped(EN, RU, "exact,translit", "'") == (["'"], "exact")
    assert mapped(EN, RU, "exact,translit", "а") == (["a"], "translit")
    assert mapped(EN, RU, "exact,translit", "щ") == (list("shch"), "translit")
    assert mapped(EN, RU, "exact,translit", "ь") == (["'"], "translit")
    assert mapped(EN, RU, "exact,translit", "ё") == (["y", "o"], "translit")
    # without an apostrophe in the source the signs start fresh
    no_apostrophe = [t for t in EN if t != "'"]
    assert mapped(no_apostrophe, RU, "exact,translit", "ъ") == ([], None)


def test_ru_to_en_translit():
    assert mapped(RU, EN, "exact,translit", "a") == (["а"], "translit")
    assert mapped(RU, EN, "exact,translit", "x") == (["к", "с"], "translit")
    assert mapped(RU, EN, "exact,translit", "'") == (["'"], "exact")
    assert mapped(RU[:2] + RU[3:], EN, "exact,translit", "'") == (["ь"], "translit")


def test_zh_cn_to_zh_hk_opencc():
    assert mapped(ZH_CN, ZH_HK, "exact,opencc", "們") == (["们"], "opencc")
    assert mapped(ZH_CN, ZH_HK, "exact,opencc", "我") == (["我"], "exact")
    assert mapped(ZH_CN, ZH_HK, "exact,opencc", "佢") == ([], None)
    # and the other direction
    assert mapped(ZH_HK, ZH_CN, "exact,opencc", "说") == (["說"], "opencc")


def test_pieces():
    assert mapped(EN, PIECES, "exact,pieces", "▁the") == (
        [" ", "t", "h", "e"],
        "pieces",
    )
    assert mapped(EN, PIECES, "exact,pieces", "▁") == ([" "], "pieces")
    assert mapped(EN, PIECES, "exact,pieces", "ñ") == ([], None)
    assert mapped(EN, PIECES, "exact,fold,pieces", "ñ") == (["n"], "fold")
    # longest source pieces win, the marker stays with its piece
    src = [BLANK, "▁th", "th", "e", "▁", "t", "h"]
    assert mapped(src, [BLANK, "▁the"], "pieces", "▁the") == (["▁th", "e"], "pieces")
    # no boundary token in the source: the marker is dropped
    assert mapped([BLANK, "a", "b"], [BLANK, "▁ab"], "pieces", "▁ab") == (
        ["a", "b"],
        "pieces",
    )


def test_none_maps_only_blank():
    tmap = token_map(EN, EN, "none")
    assert tmap.sources[0] == [0] and all(s == [] for s in tmap.sources[1:])
    report = RemapReport.from_map(tmap, EN, EN, "none")
    assert report.fresh == len(EN) - 1 and report.copied == 0
    assert "fresh" in str(report)


def test_blank_last_to_blank_first():
    nemo = EN[1:] + [BLANK]
    tmap = token_map(nemo, ES, "exact", source_blank=-1, target_blank=0)
    assert tmap.sources[0] == [len(nemo) - 1]
    assert tmap.sources[ES.index("a")] == [nemo.index("a")]
    # a source token spelled like the blank but not at the blank index is unused
    tmap = token_map([BLANK, "x", BLANK + "!"], [BLANK, "x"], "exact")
    assert tmap.sources == [[0], [1]]


def test_strategy_errors():
    with pytest.raises(ValueError, match="known: none, exact, fold"):
        token_map(EN, ES, "exact,spelling")
    with pytest.raises(ValueError, match="cannot be combined"):
        token_map(EN, ES, "none,exact")
    with pytest.raises(ValueError, match="outside"):
        token_map(EN, ES, "exact", source_blank=len(EN))
    with pytest.raises(ValueError, match="known"):
        RemapHeadHook(EN, ES, strategy="bogus")


def test_report_str_and_dict():
    report = remap_ctc_head(torch.nn.Linear(4, len(EN)), EN, RU, "exact,translit")[1]
    text = str(report)
    assert f"{len(RU)} target tokens" in text and "'щ'<-'s'+'h'+'c'+'h'" in text
    d = report.as_dict()
    assert d["n_target"] == len(RU) and d["by_strategy"]["exact"] == 2
    assert json.loads(json.dumps(d, ensure_ascii=False)) == d


def test_row_count_errors():
    head = torch.nn.Linear(N_IN, len(EN) + 1)
    with pytest.raises(ValueError, match=rf"{len(EN) + 1} rows.*{len(EN)} tokens"):
        remap_ctc_head(head, EN, ES)
    with pytest.raises(TypeError, match="kernel_size 1"):
        remap_ctc_head(torch.nn.Conv1d(N_IN, len(EN), 3), EN, ES)
    two = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, len(EN)))
    with pytest.raises(TypeError, match="exactly one"):
        remap_ctc_head(two, EN, ES)
    tmap = token_map(EN, ES)
    with pytest.raises(ValueError, match="input sizes differ"):
        remap_rows(torch.zeros(len(EN), 4), None, tmap, torch.zeros(len(ES), 5), None)


def test_remap_rows_is_pure():
    w, b = torch.randn(3, 4), torch.randn(3)
    fw, fb = torch.randn(2, 4), torch.randn(2)
    copies = [t.clone() for t in (w, b, fw, fb)]
    tmap = TokenMap([[0], [1, 2]], ["blank", "fold"], 3)
    nw, nb = remap_rows(w, b, tmap, fw, fb)
    for t, c in zip((w, b, fw, fb), copies, strict=True):
        assert torch.equal(t, c)
    torch.testing.assert_close(nw[1], (w[1] + w[2]) / 2)
    torch.testing.assert_close(nb[1], (b[1] + b[2]) / 2)


# --------------------------------------------------------------------------
# The Pretrainer hook


def docstring_yaml() -> str:
    doc = RemapHeadHook.__doc__
    block = doc.split(".. code-block:: yaml", 1)[1].split("Arguments\n", 1)[0]
    return textwrap.dedent(block).strip() + "\n"


@pytest.fixture
def source_model(tmp_path):
    """A 'pretrained' English head and its label file, on disk."""
    model_dir = tmp_path / "pretrained_en"
    model_dir.mkdir()
    enc = build_char_encoder(["the quick brown fox jumps over the lazy dog's back"])
    enc.save(model_dir / "label_encoder.txt")
    torch.manual_seed(0)
    head = SBLinear(input_size=64, n_neurons=len(enc))
    torch.save(head.state_dict(), model_dir / "head.ckpt")
    return model_dir, head, load_tokens(enc)


def load_recipe_yaml(tmp_path, model_dir, n_tokens):
    out = tmp_path / "results"
    out.mkdir(exist_ok=True)
    overrides = {
        "pretrained_dir": str(model_dir),
        "output_folder": str(out),
        "n_tokens": n_tokens,
    }
    return load_hyperpyyaml(docstring_yaml(), overrides), out


def test_pretrainer_yaml_remaps_into_the_recipe_head(tmp_path, source_model):
    model_dir, src_head, src_tokens = source_model
    target_texts = ["el niño comió años después", "qué día"]
    target_tokens = load_tokens(build_char_encoder(target_texts))
    hparams, out = load_recipe_yaml(tmp_path, model_dir, len(target_tokens))

    # The recipe fills its label encoder from data after the YAML is loaded.
    label_encoder = hparams["label_encoder"]
    label_encoder.insert_blank(index=0)
    label_encoder.update_from_iterable(target_tokens[1:], sequence_input=False)
    head = hparams["ctc_lin"]
    hook = hparams["pretrainer"].custom_hooks["head"]
    assert hook.report is None

    pretrainer = hparams["pretrainer"]
    pretrainer.collect_files()
    link = out / "pretrained" / "head.ckpt"
    assert link.is_symlink() and link.resolve() == (model_dir / "head.ckpt").resolve()
    pretrainer.load_collected()

    assert hparams["ctc_lin"] is head  # filled in place
    x = torch.randn(2, 7, 64)
    with torch.no_grad():
        old, new = src_head(x), head(x)
    for t, token in enumerate(target_tokens):
        folded = {"ñ": "n", "ó": "o", "é": "e", "í": "i", "á": "a"}.get(token, token)
        if folded in src_tokens:
            torch.testing.assert_close(new[..., t], old[..., src_tokens.index(folded)])
        else:
            assert token in hook.report.fresh_tokens
    report = json.loads((out / "remap_report.json").read_text("utf-8"))
    assert report == hook.report.as_dict()
    assert report["by_strategy"]["fold"] == 4 and report["n_target"] == len(
        target_tokens
    )


def test_pretrainer_yaml_size_mismatch_names_numbers_and_files(tmp_path, source_model):
    model_dir, _, src_tokens = source_model
    # a token file one token short of the checkpoint's rows
    (model_dir / "label_encoder.txt").unlink()
    short = build_char_encoder(["the quick brown fox jumps over the lazy dog"])
    short.save(model_dir / "label_encoder.txt")
    hparams, _ = load_recipe_yaml(tmp_path, model_dir, 5)
    hparams["label_encoder"].insert_blank(index=0)
    hparams["label_encoder"].update_from_iterable("abcd", sequence_input=False)
    hparams["pretrainer"].collect_files()
    with pytest.raises(ValueError) as err:
        hparams["pretrainer"].load_collected()
    msg = str(err.value)
    assert f"{len(src_tokens)} rows" in msg and f"{len(short)} tokens" in msg
    assert "head.ckpt" in msg and str(model_dir / "label_encoder.txt") in msg


def test_hook_target_size_mismatch(tmp_path, source_model):
    model_dir, _, src_tokens = source_model
    hook = RemapHeadHook(model_dir / "label_encoder.txt", ["<blank>", "a", "b"])
    with pytest.raises(ValueError, match=r"target head has 7 rows.*3 tokens"):
        hook(SBLinear(input_size=64, n_neurons=7), model_dir / "head.ckpt")
    with pytest.raises(ValueError, match="input sizes differ"):
        hook(SBLinear(input_size=32, n_neurons=3), model_dir / "head.ckpt")
    with pytest.raises(ValueError, match="missing.ckpt"):
        hook(SBLinear(input_size=64, n_neurons=3), model_dir / "missing.ckpt")


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_hook_in_place_for_every_head_kind(tmp_path, kind):
    torch.manual_seed(1)
    src_head = make_head(kind, len(EN))
    torch.save(src_head.state_dict(), tmp_path / "head.ckpt")
    target = make_head(kind, len(RU))
    params = [id(p) for p in target.parameters()]
    untouched = core_params(target)[0].clone()
    hook = RemapHeadHook(EN, RU, strategy="exact,translit", report_path=None)
    hook(target, tmp_path / "head.ckpt")
    assert [id(p) for p in target.parameters()] == params
    x = torch.randn(2, 3, N_IN)
    with torch.no_grad():
        old, new = logits(src_head, x), logits(target, x)
    tmap = token_map(EN, RU, "exact,translit")
    for t, srcs in enumerate(tmap.sources):
        if srcs:
            torch.testing.assert_close(new[..., t], old[..., srcs].mean(-1))
        else:  # fresh rows keep the recipe's own initialisation
            assert torch.equal(core_params(target)[0][t], untouched[t])
    assert hook.report.fresh == sum(1 for s in tmap.sources if not s)


# --------------------------------------------------------------------------
# A head saved inside a larger module


def _saved_together(tmp_path, n_rows=None):
    """encoder + head in one ModuleList checkpoint (keys 0.* and 1.w.*)."""
    n_rows = len(EN) if n_rows is None else n_rows
    torch.manual_seed(3)
    encoder = torch.nn.Sequential(SBLinear(input_size=5, n_neurons=N_IN))
    model = torch.nn.ModuleList([encoder, SBLinear(input_size=N_IN, n_neurons=n_rows)])
    torch.save(model.state_dict(), tmp_path / "model.ckpt")
    return model


def test_hook_finds_the_head_inside_a_module_list(tmp_path):
    model = _saved_together(tmp_path)
    es = build_char_encoder(["el niño comió"])
    es.save(tmp_path / "label_encoder.txt")  # the target as a recipe writes it
    target = SBLinear(input_size=N_IN, n_neurons=len(es))
    hook = RemapHeadHook(EN, tmp_path / "label_encoder.txt", strategy="exact,fold")
    hook(target, tmp_path / "model.ckpt")
    tokens = load_tokens(es)
    x = torch.randn(2, 3, N_IN)
    with torch.no_grad():
        old, new = model[1](x), target(x)
    torch.testing.assert_close(new[..., tokens.index("ñ")], old[..., EN.index("n")])
    assert hook.report.fresh == 0 and hook.report.copied == len(tokens) - 1


def test_hook_key_names_the_head_when_the_shape_is_ambiguous(tmp_path):
    torch.manual_seed(4)
    twins = torch.nn.ModuleList(
        [SBLinear(input_size=N_IN, n_neurons=len(EN)) for _ in range(2)]
    )
    torch.save(twins.state_dict(), tmp_path / "model.ckpt")
    target = SBLinear(input_size=N_IN, n_neurons=len(ES))
    with pytest.raises(ValueError, match=r"several CTC head candidates.*0\.w\.weight"):
        RemapHeadHook(EN, ES)(target, tmp_path / "model.ckpt")
    for key in ("1", "1.w", "1.w.weight"):
        RemapHeadHook(EN, ES, key=key)(target, tmp_path / "model.ckpt")
        assert torch.equal(
            target.w.weight[ES.index("a")], twins[1].w.weight[EN.index("a")]
        )
    with pytest.raises(ValueError, match="no key under '2'"):
        RemapHeadHook(EN, ES, key="2")(target, tmp_path / "model.ckpt")


def test_hook_without_a_head_of_the_source_size_names_the_weights(tmp_path):
    _saved_together(tmp_path, n_rows=len(EN) + 2)
    target = SBLinear(input_size=N_IN, n_neurons=len(ES))
    with pytest.raises(
        ValueError, match=r"no CTC head candidates.*1\.w\.weight \(31, 12\)"
    ):
        RemapHeadHook(EN, ES)(target, tmp_path / "model.ckpt")


def test_hook_reads_a_conv1d_head_into_a_linear_one(tmp_path):
    torch.manual_seed(5)
    conv = torch.nn.Conv1d(N_IN, len(EN), 1)  # NeMo's decoder layer, saved raw
    torch.save(
        {
            "decoder.decoder_layers.0.weight": conv.weight,
            "decoder.decoder_layers.0.bias": conv.bias,
        },
        tmp_path / "w.ckpt",
    )
    target = SBLinear(input_size=N_IN, n_neurons=len(ES))
    RemapHeadHook(EN, ES)(target, tmp_path / "w.ckpt")
    assert torch.equal(target.w.weight[ES.index("b")], conv.weight[EN.index("b"), :, 0])
