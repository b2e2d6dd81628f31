"""``CTCTransferBrain``: the one SpeechBrain ``Brain`` every recipe uses.

Features -> normalisation -> (augmentation) -> encoder -> CTC head -> CTC loss, with
greedy decoding, CER/WER through SpeechBrain's ``ErrorRateStats``, checkpoints through
its ``Checkpointer``, plus what transfer needs: start from a pretrained model with a
remapped head, staged unfreezing, layer-wise learning rates, a warmup + cosine
schedule that keeps per-group ratios, a guard against non-finite losses, and a
``metrics.jsonl`` line per epoch and stage.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.metric_stats import ErrorRateStats

logger = logging.getLogger(__name__)


class WarmupCosine:
    """Learning-rate factor: linear warmup, then cosine decay to ``final_ratio``.

    A callable for ``torch.optim.lr_scheduler.LambdaLR``, which multiplies each
    parameter group's own peak lr, so layer-wise lr ratios survive the schedule.

    Arguments
    ---------
    total_steps : int
        Optimizer steps of the whole run.
    warmup_ratio : float
        Fraction of ``total_steps`` spent warming up (the paper: 0.12).
    final_ratio : float
        The factor reached at the end.

    Example
    -------
    >>> f = WarmupCosine(total_steps=100, warmup_ratio=0.1, final_ratio=0.0)
    >>> [round(f(s), 3) for s in (0, 5, 10, 55, 100)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def __init__(
        self, total_steps: int, warmup_ratio: float = 0.1, final_ratio: float = 0.01
    ):
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(round(warmup_ratio * self.total_steps))
        self.final_ratio = final_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_ratio + (1.0 - self.final_ratio) * cosine


@register_checkpoint_hooks
class RunClock:
    """Training seconds so far, kept in checkpoints so a resumed run adds up."""

    def __init__(self):
        self.elapsed = 0.0

    @mark_as_saver
    def _save(self, path):
        Path(path).write_text(json.dumps({"elapsed": self.elapsed}))

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        self.elapsed = json.loads(Path(path).read_text())["elapsed"]


class CTCTransferBrain(sb.Brain):
    """A CTC ASR ``Brain`` for training from scratch or from a pretrained model.

    Modules (``modules`` dict): ``encoder`` (``[B, T, F] -> [B, T', C]``, takes
    relative lengths), ``head`` (a Linear to the token inventory), optional
    ``normalize`` (``InputNormalization``).

    Hparams read (all from the recipe YAML): ``compute_features``, ``blank_index``,
    ``number_of_epochs``, ``lr``; optional: ``augmentation`` (applied to features in
    training), ``warmup_ratio`` (0.1), ``final_lr_ratio`` (0.01), ``lr_decay``
    (layer-wise decay, 1.0 = off), ``unfreezing`` (a
    ``xlt_plugin.freeze.StagedUnfreezing``), ``pretrained_path`` with
    ``remap_strategy``, ``output_folder``, ``train_logger``.

    Arguments
    ---------
    tokenizer : CTCTextEncoder
        The target token inventory (row ``i`` of the head is token ``i``).
    *args, **kwargs
        As for ``speechbrain.Brain``.
    """

    def __init__(self, *args, tokenizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer
        self.clock = RunClock()
        self.nonfinite_skipped = 0
        self.nonfinite_in_a_row = 0
        self.steps_per_epoch = None
        self.eval_tag = None  # name of the test set being evaluated
        self.zero_shot = False  # evaluating the pretrained model as it is
        if self.checkpointer is not None:
            for name in ("head", "encoder", "normalize"):
                if name in self.modules and name not in self.checkpointer.recoverables:
                    self.checkpointer.add_recoverable(name, self.modules[name])
            self.checkpointer.add_recoverable("run_clock", self.clock)
        folder = getattr(self.hparams, "output_folder", None)
        self.metrics_path = Path(folder) / "metrics.jsonl" if folder else None

    # ------------------------------------------------------------------ model
    def compute_forward(self, batch, stage):
        """Waveforms -> CTC log-probabilities and relative lengths."""
        batch = batch.to(self.device)
        if hasattr(batch, "feats"):  # features cached by the data pipeline
            feats, wav_lens = batch.feats
        else:
            wavs, wav_lens = batch.sig
            feats = self.hparams.compute_features(wavs)
        if "normalize" in self.modules:
            feats = self.modules.normalize(feats, wav_lens)
        augment = getattr(self.hparams, "augmentation", None)
        if stage == sb.Stage.TRAIN and augment is not None:
            feats = augment(feats)
        encoded = self.modules.encoder(feats, wav_lens)
        logits = self.modules.head(encoded)
        return torch.log_softmax(logits, dim=-1), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; outside training also greedy decoding and error rates."""
        log_probs, wav_lens = predictions
        tokens, token_lens = batch.tokens
        loss = sb.nnet.losses.ctc_loss(
            log_probs, tokens, wav_lens, token_lens, self.hparams.blank_index
        )
        if stage != sb.Stage.TRAIN:
            hyps = sb.decoders.ctc_greedy_decode(
                log_probs, wav_lens, blank_id=self.hparams.blank_index
            )
            predicted = [self.decode(seq) for seq in hyps]
            self.cer_metric.append(
                batch.id, [list(p) for p in predicted], [list(t) for t in batch.wrd]
            )
            self.wer_metric.append(
                batch.id, [p.split() for p in predicted], [t.split() for t in batch.wrd]
            )
        return loss

    def decode(self, token_ids) -> str:
        """Token ids (no blanks) -> text."""
        return "".join(self.tokenizer.decode_ndim(token_ids))

    # --------------------------------------------------------------- training
    def fit_batch(self, batch):
        """One step; a non-finite loss is skipped and counted, not applied.

        After ``nonfinite_patience`` non-finite losses in a row (SpeechBrain's run
        option, default 3) training stops with a message.
        """
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        with self.training_ctx:
            outputs = self.compute_forward(batch, sb.Stage.TRAIN)
            loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
        if not torch.isfinite(loss):
            self.nonfinite_skipped += 1
            self.nonfinite_in_a_row += 1
            logger.warning(
                "Non-finite loss in batch %s: skipped (%d so far).",
                getattr(batch, "id", "?"),
                self.nonfinite_skipped,
            )
            if self.nonfinite_in_a_row > self.nonfinite_patience:
                raise RuntimeError(
                    f"{self.nonfinite_in_a_row} non-finite losses in a row: training "
                    "diverged. Lower `lr`, check the data (the prep report lists "
                    "suspicious clips), or raise --nonfinite_patience."
                )
            self.zero_grad(set_to_none=True)
            return loss.detach().cpu()
        self.nonfinite_in_a_row = 0
        with self.no_sync(not should_step):
            self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def optimizers_step(self):
        """Unscale, clip the gradient norm over ALL groups, step, schedule.

        SpeechBrain's default clips only the first parameter group, which would
        leave layer-wise groups unclipped.
        """
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1
        self.lr_scheduler.step()

    def make_dataloader(self, dataset, stage, *args, **kwargs):
        """As SpeechBrain's; remembers the training steps per epoch for the lr."""
        loader = super().make_dataloader(dataset, stage, *args, **kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = len(loader)
        return loader

    def init_optimizers(self):
        """Optimizer over layer-wise parameter groups, and the lr schedule.

        Parameters frozen for the whole run are left out; those unfrozen at a later
        stage are in, and cost nothing until they get gradients.
        """
        from xlt_plugin.freeze import layerwise_param_groups

        unfreezing = getattr(self.hparams, "unfreezing", None)
        exclude = True  # without a schedule: what is frozen now stays frozen
        if unfreezing is not None:
            unfreezing.apply(self.modules, epoch=1)
            exclude = unfreezing.always_frozen(self.modules)
        groups = layerwise_param_groups(
            self.modules,
            lr=self.hparams.lr,
            decay=getattr(self.hparams, "lr_decay", 1.0),
            exclude_frozen=exclude,
        )
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        epochs = self.hparams.number_of_epochs
        steps = (self.steps_per_epoch or 1) * epochs // self.grad_accumulation_factor
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            WarmupCosine(
                steps,
                warmup_ratio=getattr(self.hparams, "warmup_ratio", 0.1),
                final_ratio=getattr(self.hparams, "final_lr_ratio", 0.01),
            ),
        )
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)

    def on_fit_start(self):
        """Start from the pretrained model (if any), then resume if possible."""
        pretrained = getattr(self.hparams, "pretrained_path", None)
        if pretrained:
            self.transfer_from(pretrained)
        super().on_fit_start()
        if self.metrics_path is not None and if_main_process():
            self._trim_metrics(self.hparams.epoch_counter.current)

    def _wrap_distributed(self):
        """DDP as SpeechBrain does it, minus SyncBatchNorm on CPU (gloo).

        SpeechBrain converts BatchNorm to SyncBatchNorm, which only runs on GPUs;
        on CPU each process keeps its own BatchNorm statistics instead. With a
        freezing schedule, DDP must tolerate parameters without gradients.
        """
        unfreezing = getattr(self.hparams, "unfreezing", None)
        if unfreezing is not None and getattr(unfreezing, "frozen", None):
            self.find_unused_parameters = True
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )

    def transfer_from(self, source: str | os.PathLike):
        """Copy a pretrained encoder and remap its head onto our tokens."""
        from xlt_plugin.pretrained import transfer_weights

        report_path = None
        if getattr(self.hparams, "output_folder", None):
            report_path = Path(self.hparams.output_folder) / "remap_report.json"
        self.remap_report = transfer_weights(
            source,
            encoder=self.modules.encoder,
            head=self.modules.head,
            normalize=self.modules["normalize"]
            if "normalize" in self.modules
            else None,
            target_tokens=self.tokenizer,
            strategy=getattr(self.hparams, "remap_strategy", "exact"),
            savedir=getattr(self.hparams, "save_folder", None),
            report_path=report_path,
        )
        logger.info("Transferred from %s: %s", source, self.remap_report)
        return self.remap_report

    def evaluate_zero_shot(self, test_sets: dict, loader_kwargs=None) -> dict:
        """Test the pretrained model with its remapped head, before fine-tuning.

        This is the paper's "zero-shot" row (and, for accents and domains, the
        base model as it is). No checkpoint is loaded, even when one exists.

        Arguments
        ---------
        test_sets : dict
            Name -> dataset.
        loader_kwargs : dict, optional
            Test dataloader options.

        Returns
        -------
        dict
            Name -> {"CER", "WER"}.
        """
        self.transfer_from(self.hparams.pretrained_path)
        results = {}
        self.zero_shot = True
        try:
            for name, test_set in test_sets.items():
                self.eval_tag = name
                self.evaluate(test_set, test_loader_kwargs=dict(loader_kwargs or {}))
                results[name] = {
                    "CER": self.cer_metric.summarize("error_rate"),
                    "WER": self.wer_metric.summarize("error_rate"),
                }
        finally:
            self.zero_shot = False
            self.eval_tag = None
        return results

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Load the best checkpoint, except for a zero-shot evaluation."""
        if not self.zero_shot:
            super().on_evaluate_start(max_key=max_key, min_key=min_key)

    # ----------------------------------------------------------------- stages
    def on_stage_start(self, stage, epoch=None):
        """Reset metrics; in training apply this epoch's unfreezing stage."""
        self.stage_start = time.time()
        if stage == sb.Stage.TRAIN:
            unfreezing = getattr(self.hparams, "unfreezing", None)
            if unfreezing is not None:
                newly = unfreezing.apply(self.modules, epoch=epoch)
                if newly:
                    logger.info("Epoch %s: unfroze %d tensors", epoch, len(newly))
            self._frozen_bn_pending = True
        else:
            rate = ErrorRateStats
            self.cer_metric = getattr(self.hparams, "cer_computer", rate)()
            self.wer_metric = getattr(self.hparams, "error_rate_computer", rate)()

    def on_fit_batch_start(self, batch, should_step):
        """Keep fully frozen BatchNorm layers in eval mode after ``.train()``."""
        if self._frozen_bn_pending:
            from xlt_plugin.freeze import set_frozen_batchnorm_eval

            set_frozen_batchnorm_eval(self.modules)
            self._frozen_bn_pending = False

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, write ``metrics.jsonl``, checkpoint on the best dev CER."""
        seconds = time.time() - self.stage_start
        if stage != sb.Stage.TEST:
            self.clock.elapsed += seconds
        stats = {"loss": float(stage_loss)}
        if stage != sb.Stage.TRAIN:
            stats["CER"] = self.cer_metric.summarize("error_rate")
            stats["WER"] = self.wer_metric.summarize("error_rate")
        name = {sb.Stage.TRAIN: "train", sb.Stage.VALID: "valid"}.get(stage, "test")
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            self._write_metrics(epoch, name, stats, seconds)
            return
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            train_logger = getattr(self.hparams, "train_logger", None)
            if train_logger is not None:
                train_logger.log_stats(
                    stats_meta={"epoch": epoch, "lr": lr},
                    train_stats=self.train_stats,
                    valid_stats=stats,
                )
            # Metrics line first: a kill between the two leaves a line that the
            # resumed run trims (its epoch is past the last checkpoint).
            self._write_metrics(epoch, name, stats, seconds)
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={"CER": stats["CER"], "epoch": epoch},
                    min_keys=["CER"],
                    num_to_keep=getattr(self.hparams, "ckpt_keep", 1),
                )
            return
        train_logger = getattr(self.hparams, "train_logger", None)
        if train_logger is not None:
            train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
        self._write_metrics(self.hparams.epoch_counter.current, name, stats, seconds)
        wer_file = getattr(self.hparams, "test_wer_file", None)
        if wer_file and if_main_process():
            with open(wer_file, "w", encoding="utf-8") as w:
                self.wer_metric.write_stats(w)

    # ---------------------------------------------------------------- metrics
    def _write_metrics(self, epoch, stage_name, stats, seconds):
        if self.metrics_path is None or not if_main_process():
            return
        trainable = sum(p.numel() for p in self.modules.parameters() if p.requires_grad)
        lr = None
        if getattr(self, "optimizer", None) is not None:
            lr = self.optimizer.param_groups[0]["lr"]
        record: dict[str, Any] = {
            "epoch": epoch,
            "stage": stage_name,
            "loss": stats.get("loss"),
            "CER": stats.get("CER"),
            "WER": stats.get("WER"),
            "lr": lr,
            "seconds": round(seconds, 3),
            "elapsed": round(self.clock.elapsed, 3),
            "trainable_params": trainable,
        }
        if stage_name == "train":
            record["nonfinite_skipped"] = self.nonfinite_skipped
        if stage_name == "test":
            record["test_set"] = self.eval_tag
            record["zero_shot"] = self.zero_shot
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_metrics(self, last_epoch: int):
        """Drop train/valid lines past the recovered checkpoint (a killed run)."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec["stage"] in ("train", "valid") and rec["epoch"] > last_epoch:
                continue
            kept.append(line)
        self.metrics_path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
