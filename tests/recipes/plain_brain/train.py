#!/usr/bin/env python3
"""A plain SpeechBrain CTC recipe (``speechbrain.Brain``, none of the plugin's
training code), the kind the README's ``pretrainer:`` example is written for.

    python train.py recipe.yaml --output_folder=... [--pretrained_path=...]

It saves encoder and head together (a ``ModuleList``: keys ``0.*`` and
``1.w.*``) to ``<save_folder>/model.ckpt``, builds its label encoder from
``texts`` and writes it to ``<save_folder>/label_encoder.txt`` before loading a
``pretrainer`` (if the YAML has one), and keeps the weights it started from in
``<save_folder>/start.ckpt``. The "audio" is random features.
"""

import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.utils.distributed import run_on_main


class CTCBrain(sb.Brain):
    def compute_forward(self, batch, stage):
        feats, _ = batch
        encoder, head = self.modules.model
        return head(encoder(feats.to(self.device))).log_softmax(-1)

    def compute_objectives(self, log_probs, batch, stage):
        _, tokens = batch
        ones = torch.ones(len(tokens))
        return sb.nnet.losses.ctc_loss(
            log_probs, tokens.to(self.device), ones, ones, self.hparams.blank_index
        )


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    with open(hparams_file, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, overrides)
    sb.create_experiment_directory(hparams["output_folder"])
    save = Path(hparams["save_folder"])
    save.mkdir(parents=True, exist_ok=True)

    label_encoder = CTCTextEncoder()
    label_encoder.insert_blank(index=hparams["blank_index"])
    label_encoder.update_from_iterable("".join(hparams["texts"]), sequence_input=False)
    if len(label_encoder) != hparams["n_tokens"]:
        raise SystemExit(f"n_tokens must be {len(label_encoder)}")
    label_encoder.save(save / "label_encoder.txt")

    if "pretrainer" in hparams:
        run_on_main(hparams["pretrainer"].collect_files)
        hparams["pretrainer"].load_collected()
    torch.save(hparams["model"].state_dict(), save / "start.ckpt")

    torch.manual_seed(hparams["seed"])
    texts = hparams["texts"]
    longest = max(map(len, texts))
    tokens = torch.stack(
        [
            torch.nn.functional.pad(
                label_encoder.encode_sequence_torch(list(t)), (0, longest - len(t))
            )
            for t in texts
        ]
    )
    feats = torch.randn(len(texts), 3 * longest, hparams["n_feats"])
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(feats, tokens), batch_size=2
    )
    brain = CTCBrain(
        modules={"model": hparams["model"]},
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
    )
    brain.fit(range(hparams["number_of_epochs"]), loader)
    torch.save(hparams["model"].state_dict(), save / "model.ckpt")
