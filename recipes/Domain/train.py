#!/usr/bin/env python3
"""Adapt the English base to an application domain, or train from scratch.

    python train.py hparams/xfer.yaml --data_folder=data/en-medical \
        --pretrained_path=results/EnglishBase/small/1234/model

Any Common Voice-layout folder works; `xlt synth --lang en --domain medical`
makes one. The test set is scored per `sentence_domain`: the base as it is
(zero-shot), after fine-tuning, and (scratch.yaml) from scratch. With
`lm_order` > 0 a word n-gram LM is then built from the TRAIN transcripts and the
test set is decoded again with beam search + LM (metrics lines with
"decoder": "beam+lm").
"""

import speechbrain as sb

from xlt_plugin.recipe import main


def test_with_domain_lm(brain, datasets, hparams):
    """Build the domain LM from the training transcripts; re-test with it."""
    from xlt_plugin.decode.lm import build_arpa
    from xlt_plugin.decode.transcribe import CTCDecoder, evaluate_decoder
    from xlt_plugin.tokens import load_tokens

    if not sb.utils.distributed.if_main_process():
        return {}
    # TRAIN sentences only: the test sentences must stay unseen by the LM.
    sentences = [
        row["wrd"]
        for row in sb.dataio.dataio.load_data_csv(hparams["train_csv"]).values()
    ]
    build_arpa(sentences, hparams["lm_file"], order=hparams["lm_order"])
    decoder = CTCDecoder(
        load_tokens(brain.tokenizer),
        hparams["blank_index"],
        beam=hparams["lm_beam"],
        lm=hparams["lm_file"],
        lm_weight=hparams["lm_weight"],
        word_bonus=hparams["lm_word_bonus"],
    )
    record = {
        "decoder": "beam+lm",
        "beam": hparams["lm_beam"],
        "lm": str(hparams["lm_file"]),
        "lm_order": hparams["lm_order"],
        "lm_weight": hparams["lm_weight"],
        "lm_word_bonus": hparams["lm_word_bonus"],
    }
    return evaluate_decoder(
        brain,
        datasets["test"],
        decoder,
        hparams.get("test_dataloader_opts", {}),
        record,
    )


def lm_tests(brain, datasets, hparams):
    """The exported model's ``test_beam_lm`` metadata (None without an LM)."""
    lm_results = None
    if hparams.get("lm_order", 0) > 0:
        lm_results = test_with_domain_lm(brain, datasets, hparams)
    return {"test_beam_lm": lm_results}


if __name__ == "__main__":
    # The steps of every recipe (xlt_plugin/recipe.py), then the domain LM test.
    main(extra_tests=lm_tests)
