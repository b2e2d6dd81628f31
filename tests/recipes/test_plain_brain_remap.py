"""The README's `pretrainer:` YAML, run as written by a plain SpeechBrain recipe.

The YAML block between the README's `plain-recipe-pretrainer-yaml` markers is
appended to a tiny `speechbrain.Brain` recipe (tests/recipes/plain_brain): an
"English" run saves encoder and head in one `ModuleList` checkpoint, then a
"Spanish" run writes its own label encoder and loads that checkpoint through
the README's Pretrainer with RemapHeadHook. Every mapped token must give the
source model's logit on the same input.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from speechbrain.nnet.linear import Linear

from xlt_plugin.remap import token_map
from xlt_plugin.tokens import load_tokens

RECIPE = REPO / "tests" / "recipes" / "plain_brain"
SPANISH = ["el niño comió años después", "qué día tan lindo", "jugó el pingüino"]


def readme_yaml() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- plain-recipe-pretrainer-yaml[^>]*-->\s*```yaml\n(.*?)```\s*"
        r"<!-- /plain-recipe-pretrainer-yaml -->",
        text,
        flags=re.S,
    )
    assert match, "README.md lost its marked pretrainer YAML block"
    return match.group(1)


def _run(hparams_file, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(RECIPE / "train.py"), str(hparams_file), *args],
        cwd=RECIPE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _model(n_tokens: int, state: dict) -> torch.nn.Module:
    encoder = torch.nn.Sequential(
        Linear(input_size=20, n_neurons=32), torch.nn.LeakyReLU()
    )
    model = torch.nn.ModuleList([encoder, Linear(input_size=32, n_neurons=n_tokens)])
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain_brain")
    source = tmp / "en"
    _run(RECIPE / "recipe.yaml", f"--output_folder={source}")

    n_tokens = len(set("".join(SPANISH))) + 1
    base = (RECIPE / "recipe.yaml").read_text(encoding="utf-8")
    texts = f"texts: {json.dumps(SPANISH, ensure_ascii=False)}"
    base = re.sub(r"(?m)^texts: .*$", lambda _: texts, base)
    base = re.sub(r"(?m)^n_tokens: .*$", f"n_tokens: {n_tokens}", base)
    target_yaml = tmp / "es.yaml"
    target_yaml.write_text(base + "\n" + readme_yaml(), encoding="utf-8")
    target = tmp / "es"
    _run(target_yaml, f"--output_folder={target}", f"--pretrained_path={source}/save")
    return source / "save", target


def test_readme_yaml_keeps_the_logits_of_every_mapped_token(runs):
    source, target = runs
    src_tokens = load_tokens(source / "label_encoder.txt")
    tgt_tokens = load_tokens(target / "save" / "label_encoder.txt")
    assert len(src_tokens) == 28 and "ñ" in tgt_tokens
    old = _model(len(src_tokens), torch.load(source / "model.ckpt"))
    new = _model(len(tgt_tokens), torch.load(target / "save" / "start.ckpt"))
    x = torch.randn(2, 9, 20)
    with torch.no_grad():
        old_logits, new_logits = old[1](old[0](x)), new[1](new[0](x))

    tmap = token_map(src_tokens, tgt_tokens, "exact,fold")
    mapped = [t for t, srcs in enumerate(tmap.sources) if srcs]
    for t in mapped:
        torch.testing.assert_close(
            new_logits[..., t], old_logits[..., tmap.sources[t]].mean(-1)
        )
    report = json.loads((target / "remap_report.json").read_text("utf-8"))
    assert report["blank"] + report["copied"] + report["averaged"] == len(mapped)
    assert report["n_source"] == len(src_tokens)
    assert report["n_target"] == len(tgt_tokens)
    assert report["by_strategy"]["fold"] >= 4  # ñ ó é á ü ...
    # The recipe then trained from there: the saved model moved on.
    trained = torch.load(target / "save" / "model.ckpt")
    assert not torch.equal(trained["1.w.weight"], new[1].w.weight)
