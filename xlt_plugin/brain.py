"""``CTCTransferBrain``: the one SpeechBrain ``Brain`` every recipe uses.

Features -> normalisation -> (augmentation) -> encoder -> CTC head -> CTC loss, with
greedy decoding, CER/WER through SpeechBrain's ``ErrorRateStats``, checkpoints through
its ``Checkpointer``, plus what transfer needs: start from a pretrained model with a
remapped head, staged unfreezing, layer-wise learning rates, a warmup + cosine
schedule that keeps per-group ratios, a guard against non-finite losses, and a
``metrics.jsonl`` line per epoch and stage.

Reliability: a killed run resumes exactly (``xlt_plugin/resume.py``); a batch with
a non-finite loss is skipped without touching the weights or the BatchNorm
statistics; an out-of-memory batch stops the run with the settings to lower.
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
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.metric_stats import ErrorRateStats

from xlt_plugin.resume import (
    RandomStates,
    RunClock,
    set_aside_broken_checkpoints,
)

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
        self.random_states = RandomStates()
        self.nonfinite_in_a_row = 0
        self.steps_per_epoch = None
        self.eval_tag = None  # name of the test set being evaluated
        self.zero_shot = False  # evaluating the pretrained model as it is
        if self.checkpointer is not None:
            for name in ("head", "encoder", "normalize"):
                if name in self.modules and name not in self.checkpointer.recoverables:
                    self.checkpointer.add_recoverable(name, self.modules[name])
            self.checkpointer.add_recoverable("run_clock", self.clock)
            # Optional: checkpoints written before it existed still resume.
            self.checkpointer.add_recoverable(
                "random_states", self.random_states, optional_load=True
            )
        folder = getattr(self.hparams, "output_folder", None)
        self.metrics_path = Path(folder) / "metrics.jsonl" if folder else None

    @property
    def nonfinite_skipped(self) -> int:
        """Training batches skipped for a non-finite loss, over the whole run."""
        return self.clock.nonfinite_skipped

    @nonfinite_skipped.setter
    def nonfinite_skipped(self, value: int) -> None:
        self.clock.nonfinite_skipped = value

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

        A skipped batch changes nothing: not the weights, not the optimizer, not
        the BatchNorm running statistics its forward pass updated. Under DDP the
        processes agree, so all skip together. After ``nonfinite_patience``
        non-finite losses in a row (SpeechBrain's run option, default 3) training
        stops with a message. Running out of memory stops it with the settings
        to lower.
        """
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        saved = _running_statistics(self.modules)
        try:
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            if not self._all_finite(loss):
                _restore_running_statistics(saved)
                self._skip_nonfinite(batch)
                return loss.detach().cpu()
            self.nonfinite_in_a_row = 0
            with self.no_sync(not should_step):
                self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        except RuntimeError as err:  # torch.OutOfMemoryError is one
            self._raise_if_out_of_memory(err, batch, sb.Stage.TRAIN)
            raise
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def evaluate_batch(self, batch, stage):
        """As SpeechBrain's; running out of memory names the settings to lower."""
        try:
            return super().evaluate_batch(batch, stage)
        except RuntimeError as err:
            self._raise_if_out_of_memory(err, batch, stage)
            raise

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every DDP process (they must agree)."""
        bad = torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=loss.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad)
        return bool(bad.item() == 0)

    def _skip_nonfinite(self, batch) -> None:
        self.nonfinite_skipped += 1
        self.nonfinite_in_a_row += 1
        logger.warning(
            "Non-finite loss in batch %s: skipped (%d so far).",
            getattr(batch, "id", "?"),
            self.nonfinite_skipped,
        )
        self.zero_grad(set_to_none=True)
        if self.nonfinite_in_a_row > self.nonfinite_patience:
            raise RuntimeError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row (batches "
                f"up to {getattr(batch, 'id', '?')}): training diverged. Lower `lr`, "
                "check the data (prep_report.md and prep_skipped.tsv in the save "
                "folder), or raise --nonfinite_patience; then rerun the same "
                "command to resume from the last checkpoint."
            )

    def _raise_if_out_of_memory(self, err: RuntimeError, batch, stage) -> None:
        """Re-raise an out-of-memory error with what to change; else return."""
        text = str(err)
        if not (
            isinstance(err, torch.OutOfMemoryError)
            or any(sign in text for sign in _OUT_OF_MEMORY_SIGNS)
        ):
            return
        ids = [str(i) for i in getattr(batch, "id", [])]
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        longest = _longest_seconds(batch, self.hparams)
        size = f"{len(ids)} clips ({shown})"
        if longest is not None:
            size += f", the longest {longest:.1f} s"
        keys = ("batch_size", "max_duration", "dynamic_batching", "max_batch_length")
        now = [
            f"{k}={getattr(self.hparams, k)}" for k in keys if hasattr(self.hparams, k)
        ]
        now.append(f"grad_accumulation_factor={self.grad_accumulation_factor}")
        stage_name = {sb.Stage.TRAIN: "training", sb.Stage.VALID: "validation"}
        raise torch.OutOfMemoryError(
            f"Out of memory on {self.device} in a {stage_name.get(stage, 'test')} "
            f"batch of {size}. Settings now: {', '.join(now)}. Lower the batch "
            "size (--batch_size, or max_batch_length with dynamic batching) or the "
            "longest clip (--max_duration); --grad_accumulation_factor=2 with half "
            "the batch size keeps the effective batch. Then rerun the same "
            "command: training resumes from the last checkpoint."
        ) from err

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
        """Start from the pretrained model (if any), then resume if possible.

        Checkpoint folders a killed run left half-written are set aside first,
        so the newest whole checkpoint is the one resumed from.
        """
        pretrained = getattr(self.hparams, "pretrained_path", None)
        if pretrained:
            self.transfer_from(pretrained)
        # SpeechBrain's on_fit_start, with the check between the optimizer's
        # creation (it adds recoverables that the check must see) and recovery.
        self._compile()
        self._wrap_distributed()
        self.init_optimizers()
        if self.checkpointer is not None:
            self._set_aside_broken_checkpoints()
            self.checkpointer.recover_if_possible()
        if self.metrics_path is not None and if_main_process():
            self._trim_metrics(self.hparams.epoch_counter.current)

    def _set_aside_broken_checkpoints(self) -> None:
        if self.checkpointer is not None:
            run_on_main(set_aside_broken_checkpoints, args=[self.checkpointer])

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
            self._set_aside_broken_checkpoints()
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
        """Keep fully frozen BatchNorm layers in eval mode after ``.train()``.

        The first batch after resuming from an intra-epoch checkpoint also gets
        the random-number states that checkpoint saved.
        """
        self.random_states.apply_pending()
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
            stats["loss"] = _mean_over_processes(stats["loss"])
            self._write_metrics(epoch, name, stats, seconds)
            if self.nonfinite_skipped:  # shown in train_log.txt too
                stats["nonfinite_skipped"] = self.nonfinite_skipped
            self.train_stats = stats
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


def _mean_over_processes(value: float) -> float:
    """The mean of ``value`` over DDP processes (itself without DDP).

    Each process averages the loss of its own share of the batches; the run's
    training loss is the mean of those (equal shares: the sampler pads).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    total = torch.tensor([value], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        total = total.cuda()
    torch.distributed.all_reduce(total)
    return float(total.item()) / torch.distributed.get_world_size()


def _running_statistics(modules: torch.nn.Module) -> list:
    """Copies of the state a forward pass updates in training (BatchNorm buffers,
    global ``InputNormalization`` statistics), for :func:`_restore_running_statistics`.
    """
    saved: list = [(buf, buf.detach().clone()) for buf in modules.buffers()]
    for module in modules.modules():
        if hasattr(module, "_statistics_dict") and getattr(module, "count", 0):
            stats = module._statistics_dict()
            saved.append((module, {k: _clone(v) for k, v in stats.items()}))
    return saved


def _clone(value):
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _restore_running_statistics(saved: list) -> None:
    for target, value in saved:
        if isinstance(target, torch.Tensor):
            target.copy_(value)
        else:
            target._load_statistics_dict(value)


#: How torch words running out of memory (CUDA, and the CPU allocator).
_OUT_OF_MEMORY_SIGNS = ("out of memory", "not enough memory", "can't allocate memory")


def _longest_seconds(batch, hparams) -> float | None:
    """Seconds of the longest clip in a padded batch (waveforms or features)."""
    if hasattr(batch, "sig"):
        return batch.sig[0].shape[-1] / getattr(hparams, "sample_rate", 16000)
    if hasattr(batch, "feats"):
        return batch.feats[0].shape[1] * getattr(hparams, "hop_length", 10) / 1000
    return None
