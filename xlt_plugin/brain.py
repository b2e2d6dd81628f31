"""``CTCTransferBrain``: the one SpeechBrain ``Brain`` every recipe uses.

(Waveform augmentation) -> features -> normalisation -> (feature augmentation) ->
encoder -> CTC head -> CTC loss, with
greedy decoding, CER/WER through :mod:`xlt_plugin.scoring`, checkpoints through
SpeechBrain's ``Checkpointer``, plus what transfer needs: start from a pretrained
model with a remapped head, staged unfreezing, layer-wise learning rates, a
warmup + cosine schedule that keeps per-group ratios, a guard against non-finite
losses, and a ``metrics.jsonl`` line per epoch and stage (:mod:`xlt_plugin.runs`),
optionally live curves through SpeechBrain's ``TensorboardLogger``.

Devices and precision are SpeechBrain's run options (``--device=cuda``,
``--precision=bf16|fp16``, DDP through ``torchrun``): the training step enters
SpeechBrain's autocast and GradScaler; features and the CTC loss stay float32.

Reliability: a killed run resumes exactly (``xlt_plugin/resume.py``); a batch with
a non-finite loss is skipped without touching the weights or the BatchNorm
statistics; an out-of-memory batch stops the run with the settings to lower.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from xlt_plugin.freeze import (
    LayerwiseOptimizer,
    head_only_warm_start,
    set_frozen_batchnorm_eval,
)
from xlt_plugin.resume import (
    RandomStates,
    RunClock,
    save_or_explain,
    set_aside_broken_checkpoints,
)
from xlt_plugin.runs import BEST_KEY, append_metrics, metrics_path, trim_metrics
from xlt_plugin.scoring import ErrorRates

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


@dataclasses.dataclass
class TransferSettings:
    """The recipe-YAML keys ``CTCTransferBrain`` reads, with their defaults.

    Read once, when the Brain is built (:meth:`from_hparams`); the Brain reads
    ``self.settings``, never ``hparams`` with a default of its own. A key missing
    from the YAML takes the default below; a required one (no default) missing
    is an error naming it. A misspelt command-line override is refused before
    this (``--number_of_epoch is not a key``, :func:`xlt_plugin.recipe.load_recipe`).

    ======================  ===============  ===========================================
    key                     default          meaning
    ======================  ===============  ===========================================
    ``lr``                  required         peak lr of the top layer
    ``number_of_epochs``    required         epochs of the run (for the lr schedule)
    ``blank_index``         required         CTC blank token id
    ``warmup_ratio``        0.1              fraction of the steps spent warming up
    ``final_lr_ratio``      0.01             lr factor reached at the end (cosine)
    ``lr_decay``            1.0              layer-wise lr factor per layer, top-down
    ``unfreezing``          None             a ``xlt_plugin.freeze.StagedUnfreezing``
    ``augmentation``        None             applied to the features in training
    ``wav_augmentation``    None             applied to the waveforms in training
    ``pretrained_path``     None             start from this model (remapped head)
    ``pretrainer``          None             a ``Pretrainer`` that loads the base model
    ``remap_strategy``      ``"exact"``      see ``xlt_plugin/remap.py``
    ``output_folder``       None             where ``metrics.jsonl`` is written
    ``save_folder``         None             where the pretrained files are kept
    ``train_logger``        None             SpeechBrain train logger
    ``tensorboard_logger``  None             SpeechBrain ``TensorboardLogger`` too
    ``cer_computer``        None             CER stats class (None: ErrorRateStats)
    ``error_rate_computer`` None             WER stats class (None: ErrorRateStats)
    ``ckpt_keep``           1                best checkpoints kept
    ``test_wer_file``       None             per-utterance WER report of the test
    ``sample_rate``         16000            for the out-of-memory message
    ``hop_length``          10               ms per feature frame (same)
    ``head_calibration``    ``"none"``       copied rows: ``rescale``/``temperature``
    ``head_blend_alpha``    1.0              copied rows: alpha*copied + (1-alpha)*fresh
    ``copy_blank``          True             False: the blank row starts fresh
    ``head_lr_multiplier``  1.0              the head's lr = ``lr`` times this
    ``head_warmup_ratio``   None             the head's own warmup ratio
    ``head_only_epochs``    0                train only the head for N epochs first
    ``calibration_batches`` 4                training batches that fit the temperature
    ``replay_data_folder``  None             rehearsal: a source corpus (CV layout)
    ``replay_ratio``        0.0              source share of each training batch
    ``average_alpha``       None             average with the base (a number, ``auto``)
    ``average_grid``        None             alphas tried by ``auto`` (None: 0.2..1.0)
    ``average_batchnorm``   ``"average"``    or ``recompute`` the BatchNorm statistics
    ``average_recompute_batches`` 20         batches for ``recompute``
    ``adapter_dim``         0                bottleneck adapters (0: none)
    ``adapter_train_batchnorm`` False        BatchNorm trainable beside the adapters
    ======================  ===============  ===========================================

    The last eight (continuous learning, DESIGN.md) are read by the recipe
    steps (:mod:`xlt_plugin.recipe`: ``common_voice_data``, ``use_adapters``,
    ``average_with_base``), before and after the Brain's own work.

    Objects the Brain calls on every batch or epoch are read from ``hparams``
    where used, like its ``modules``: ``compute_features`` (required unless the
    batches carry cached ``feats``) and ``epoch_counter`` (required for
    training).

    Example
    -------
    >>> s = TransferSettings.from_hparams({"lr": 0.1, "number_of_epochs": 2,
    ...                                    "blank_index": 0, "lr_decay": 0.8})
    >>> s.lr_decay, s.warmup_ratio
    (0.8, 0.1)
    >>> TransferSettings.from_hparams({"lr": 0.1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    ValueError: CTCTransferBrain needs these keys in the recipe YAML: ...
    """

    lr: float
    number_of_epochs: int
    blank_index: int
    warmup_ratio: float = 0.1
    final_lr_ratio: float = 0.01
    lr_decay: float = 1.0
    unfreezing: Any = None
    augmentation: Any = None
    wav_augmentation: Any = None
    pretrained_path: Any = None
    pretrainer: Any = None
    remap_strategy: str = "exact"
    output_folder: Any = None
    save_folder: Any = None
    train_logger: Any = None
    tensorboard_logger: Any = None
    cer_computer: Any = None
    error_rate_computer: Any = None
    ckpt_keep: int = 1
    test_wer_file: Any = None
    sample_rate: int = 16000
    hop_length: float = 10
    # Remedies for a remapped head (xlt_plugin/remap.py, adjust_rows and
    # fit_temperature; xlt_plugin/freeze.py). Off by default. With a
    # `pretrainer` the YAML hands the first three to its RemapHeadHook.
    head_calibration: str = "none"
    head_blend_alpha: float = 1.0
    copy_blank: bool = True
    head_lr_multiplier: float = 1.0
    head_warmup_ratio: Any = None
    head_only_epochs: int = 0
    calibration_batches: int = 4
    replay_data_folder: Any = None
    replay_ratio: float = 0.0
    average_alpha: Any = None
    average_grid: Any = None
    average_batchnorm: str = "average"
    average_recompute_batches: int = 20
    adapter_dim: int = 0
    adapter_train_batchnorm: bool = False

    @classmethod
    def from_hparams(cls, hparams) -> TransferSettings:
        """Reads the keys from a hparams dict or namespace (others are ignored).

        Arguments
        ---------
        hparams : dict or SimpleNamespace
            The loaded recipe YAML (``Brain.hparams``).

        Returns
        -------
        TransferSettings
        """
        if not isinstance(hparams, Mapping):
            hparams = vars(hparams) if hparams is not None else {}
        fields = dataclasses.fields(cls)
        missing = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.name not in hparams
        ]
        if missing:
            raise ValueError(
                "CTCTransferBrain needs these keys in the recipe YAML: "
                f"{', '.join(missing)}."
            )
        return cls(**{f.name: hparams[f.name] for f in fields if f.name in hparams})


class CTCTransferBrain(sb.Brain):
    """A CTC ASR ``Brain`` for training from scratch or from a pretrained model.

    Modules (``modules`` dict): ``encoder`` (``[B, T, F] -> [B, T', C]``, takes
    relative lengths), ``head`` (a Linear to the token inventory), optional
    ``normalize`` (``InputNormalization``).

    Hparams read: the keys of :class:`TransferSettings` (the table of them and
    their defaults), read once into ``self.settings``, plus ``compute_features``
    and ``epoch_counter``.

    Freezing, staged unfreezing and layer-wise lrs go through the same machinery
    any SpeechBrain ``Brain`` can use from YAML: ``opt_class`` is wrapped in a
    ``xlt_plugin.freeze.LayerwiseOptimizer`` (unless it is one already) with
    ``lr``, ``lr_decay`` and ``unfreezing``, and the schedule is applied at each
    epoch start (as ``xlt_plugin.freeze.UnfreezingEpochCounter`` does).

    Arguments
    ---------
    tokenizer : CTCTextEncoder
        The target token inventory (row ``i`` of the head is token ``i``).
    *args, **kwargs
        As for ``speechbrain.Brain``.
    """

    def __init__(self, *args, tokenizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = TransferSettings.from_hparams(getattr(self, "hparams", None))
        settings = self.settings
        settings.unfreezing = head_only_warm_start(
            settings.head_only_epochs, settings.unfreezing
        )
        if self.opt_class is not None and not isinstance(
            self.opt_class, LayerwiseOptimizer
        ):
            self.opt_class = LayerwiseOptimizer(
                self.opt_class,
                self.modules,
                lr=settings.lr,
                decay=settings.lr_decay,
                unfreezing=settings.unfreezing,
                head_lr_multiplier=settings.head_lr_multiplier,
            )
        if settings.unfreezing is not None and settings.unfreezing.frozen:
            # DDP must tolerate the parameters a schedule keeps without gradients.
            self.find_unused_parameters = True
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
        folder = settings.output_folder
        self.metrics_path = metrics_path(folder) if folder else None
        if settings.wav_augmentation is not None and getattr(
            self.hparams, "feature_cache", None
        ):
            raise ValueError(CACHE_CONFLICT)

    @property
    def nonfinite_skipped(self) -> int:
        """Training batches skipped for a non-finite loss, over the whole run."""
        return self.clock.nonfinite_skipped

    @nonfinite_skipped.setter
    def nonfinite_skipped(self, value: int) -> None:
        self.clock.nonfinite_skipped = value

    # ------------------------------------------------------------------ model
    def compute_forward(self, batch, stage):
        """Waveforms -> CTC log-probabilities and relative lengths.

        In training only, ``wav_augmentation`` transforms the waveforms and
        ``augmentation`` the normalised features; an ``Augmenter`` may change
        lengths (speed) and grow the batch (``concat_original``,
        ``repeat_augment``): the lengths it returns are used, and
        :meth:`compute_objectives` replicates the targets to match.

        The batch's lengths reach a featurizer that takes them (NeMo's), whose
        valid frames then give the encoder's lengths; SpeechBrain's ``Fbank``
        takes none and is called as before. A featurizer that normalises itself
        (NeMo's ``per_feature``) is not normalised again.

        Mixed precision (SpeechBrain's ``--precision=bf16|fp16``, whose autocast
        :meth:`fit_batch` enters): the encoder and the head run in the low
        precision; the waveform augmentation, the features and their
        normalisation run in float32, as NeMo's preprocessor does (a power
        spectrum overflows fp16), and the log-softmax too, so that the CTC loss
        gets float32 log-probabilities.
        """
        from xlt_plugin.lobes.nemo_features import featurize, normalizes_itself

        # Non-blocking: with pinned loader memory (`pin_memory: True`) the copy to
        # a GPU overlaps; elsewhere it is an ordinary copy.
        batch = batch.to(self.device, non_blocking=True)
        featurizer = getattr(self.hparams, "compute_features", None)
        train = stage == sb.Stage.TRAIN
        wav_augment = self.settings.wav_augmentation if train else None
        with _full_precision(self.device_type):
            if hasattr(batch, "feats"):  # features cached by the data pipeline
                if wav_augment is not None:
                    raise ValueError(CACHE_CONFLICT)
                feats, wav_lens = batch.feats
            else:
                wavs, wav_lens = batch.sig
                if wav_augment is not None:
                    wavs, wav_lens = _augment(wav_augment, wavs, wav_lens)
                feats, wav_lens = featurize(featurizer, wavs, wav_lens)
            if "normalize" in self.modules and not normalizes_itself(featurizer):
                feats = self.modules.normalize(feats, wav_lens)
            augment = self.settings.augmentation
            if train and augment is not None:
                feats, wav_lens = _augment(augment, feats, wav_lens)
        encoded = self.modules.encoder(feats, wav_lens)
        logits = self.modules.head(encoded)
        # float32 whatever the autocast: bf16 has 8 significant bits, too few
        # for the log-probabilities the CTC loss sums over its paths.
        return torch.log_softmax(logits.float(), dim=-1), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; outside training also greedy decoding and error rates."""
        log_probs, wav_lens = predictions
        tokens, token_lens = batch.tokens
        if stage == sb.Stage.TRAIN:
            # Targets follow a batch the augmenters grew: waveform ones first.
            for augment in (self.settings.wav_augmentation, self.settings.augmentation):
                if hasattr(augment, "replicate_multiple_labels"):
                    tokens, token_lens = augment.replicate_multiple_labels(
                        tokens, token_lens
                    )
        loss = sb.nnet.losses.ctc_loss(
            log_probs, tokens, wav_lens, token_lens, self.settings.blank_index
        )
        if stage != sb.Stage.TRAIN:
            hyps = sb.decoders.ctc_greedy_decode(
                log_probs, wav_lens, blank_id=self.settings.blank_index
            )
            predicted = [self.decode(seq) for seq in hyps]
            self.scores.append(batch.id, predicted, batch.wrd)
        return loss

    def decode(self, token_ids) -> str:
        """Token ids (no blanks) -> text."""
        return "".join(self.tokenizer.decode_ndim(token_ids))

    # --------------------------------------------------------------- training
    def fit_batch(self, batch):
        """One step; a non-finite loss is skipped and counted, not applied.

        Overridden: SpeechBrain's ``check_loss_isfinite`` hook can only count or
        raise, after the forward pass has moved the BatchNorm statistics and
        with ``backward`` still to come; skipping cleanly needs the whole step.

        A skipped batch changes nothing: not the weights, not the optimizer, not
        the BatchNorm running statistics its forward pass updated. Under DDP the
        processes agree, so all skip together. After ``nonfinite_patience``
        non-finite losses in a row (SpeechBrain's run option, default 3) training
        stops with a message. Running out of memory stops it with the settings
        to lower.

        SpeechBrain's mixed precision is kept as its own step has it: the
        forward pass and the loss under ``self.training_ctx`` (the autocast of
        ``--precision``), the backward through ``self.scaler`` (fp16's
        GradScaler; a no-op otherwise), unscaled in :meth:`optimizers_step`.
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
        """As SpeechBrain's; running out of memory names the settings to lower.

        Overridden only to translate the error (no hook sees it).
        """
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
        longest = _longest_seconds(batch, self.settings)
        size = f"{len(ids)} clips ({shown})"
        if longest is not None:
            size += f", the longest {longest:.1f} s"
        keys = ("batch_size", "max_duration", "dynamic_batching")
        now = [
            f"{k}={getattr(self.hparams, k)}" for k in keys if hasattr(self.hparams, k)
        ]
        now.append(f"grad_accumulation_factor={self.grad_accumulation_factor}")
        stage_name = {sb.Stage.TRAIN: "training", sb.Stage.VALID: "validation"}
        raise torch.OutOfMemoryError(
            f"Out of memory on {self.device} in a {stage_name.get(stage, 'test')} "
            f"batch of {size}. Settings now: {', '.join(now)}. Lower the batch "
            "size (--batch_size, or the max_batch_length of --dynamic_batching) or the "
            "longest clip (--max_duration); --grad_accumulation_factor=2 with half "
            "the batch size keeps the effective batch. Then rerun the same "
            "command: training resumes from the last checkpoint."
        ) from err

    def optimizers_step(self):
        """Unscale, clip the gradient norm over ALL groups, step.

        Overridden: SpeechBrain's default clips only the first parameter group,
        which would leave layer-wise groups unclipped.
        """
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        # SpeechBrain's run option, as its own step honours it (fp16's
        # GradScaler skips non-finite gradients by itself).
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Advances the lr schedule once per optimizer step.

        With a ``tensorboard_logger``, also writes the step's training loss and
        lr (tags ``loss/train_step``, ``lr/train_step``) at the schedule's step,
        which a resumed run continues.
        """
        if should_step:
            self.lr_scheduler.step()
            writer = getattr(self.settings.tensorboard_logger, "writer", None)
            if writer is not None:  # None on non-main DDP processes
                step = self.lr_scheduler.last_epoch
                # fit_batch copies the loss to the CPU anyway: no extra sync.
                writer.add_scalar("loss/train_step", float(loss.detach()), step)
                lr = self.optimizer.param_groups[0]["lr"]
                writer.add_scalar("lr/train_step", lr, step)

    def make_dataloader(self, dataset, stage, *args, **kwargs):
        """As SpeechBrain's; remembers the training steps per epoch for the lr.

        Overridden: the schedule's length is known only once the training
        loader exists, and no hook sees it before ``init_optimizers``.
        """
        loader = super().make_dataloader(dataset, stage, *args, **kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = len(loader)
            self.train_loader = loader  # for the head's temperature (if any)
        return loader

    def init_optimizers(self):
        """SpeechBrain's optimizer, then the lr schedule and the checkpoint check.

        Overridden (SpeechBrain's hook for more than one optimizer-like object):
        ``super()`` builds the optimizer through ``opt_class``, a
        :class:`~xlt_plugin.freeze.LayerwiseOptimizer` (layer-wise groups;
        parameters frozen for the whole run left out, those unfrozen at a later
        stage in, costing nothing until they get gradients). Then the warmup +
        cosine schedule, whose length needs the steps per epoch. Last, before
        ``on_fit_start`` recovers, checkpoint folders a killed run left
        half-written are set aside: here, because the check must see the
        recoverables added just now.
        """
        super().init_optimizers()
        if self.opt_class is None:
            return
        settings = self.settings
        if settings.unfreezing is not None:
            # Epoch 1's state until the first epoch starts (e.g. for a test of
            # a finished run); after the optimizer, which needs no frozen state.
            settings.unfreezing.apply(self.modules, epoch=1)
        epochs = settings.number_of_epochs
        steps = (self.steps_per_epoch or 1) * epochs // self.grad_accumulation_factor
        schedule = WarmupCosine(
            steps,
            warmup_ratio=settings.warmup_ratio,
            final_ratio=settings.final_lr_ratio,
        )
        if settings.head_warmup_ratio is not None:
            # One factor per group: the head's group warms up on its own.
            head_schedule = WarmupCosine(
                steps,
                warmup_ratio=settings.head_warmup_ratio,
                final_ratio=settings.final_lr_ratio,
            )
            schedule = [
                head_schedule if group.get("name") == "head" else schedule
                for group in self.optimizer.param_groups
            ]
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)
            self._set_aside_broken_checkpoints()

    def on_fit_start(self):
        """Start from the pretrained model (if any), then resume if possible.

        Checkpoint folders a killed run left half-written are set aside first
        (in :meth:`init_optimizers`), so the newest whole checkpoint is the one
        resumed from. Overridden (SpeechBrain's hook) to load the pretrained
        weights before the optimizer exists, and to trim ``metrics.jsonl``
        after recovery.
        """
        # The pretrained model, unless a checkpoint is there to resume from: a
        # resumed run never loads it over its own weights.
        pretrained = self.settings.pretrained_path or self.settings.pretrainer
        if pretrained and not self._checkpoint_to_resume():
            self.transfer_from()
            if self.settings.head_calibration == "temperature":
                self.calibrate_head_temperature()
        # Compile, wrap for DDP, init_optimizers (which sets aside broken
        # checkpoints), recover.
        super().on_fit_start()
        if self.metrics_path is not None and if_main_process():
            self._trim_metrics(self.hparams.epoch_counter.current)

    def _set_aside_broken_checkpoints(self) -> None:
        if self.checkpointer is not None:
            run_on_main(set_aside_broken_checkpoints, args=[self.checkpointer])

    def _wrap_distributed(self):
        """DDP as SpeechBrain does it, minus SyncBatchNorm on CPU (gloo).

        Overridden (a private method; no public hook wraps modules): SpeechBrain
        converts BatchNorm to SyncBatchNorm, which only runs on GPUs; on CPU each
        process keeps its own BatchNorm statistics instead.
        """
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )

    def _checkpoint_to_resume(self) -> bool:
        if self.checkpointer is None:
            return False
        self._set_aside_broken_checkpoints()
        return self.checkpointer.find_checkpoint() is not None

    def transfer_from(self, source: str | os.PathLike | None = None):
        """Load the pretrained encoder and remap its head onto our tokens.

        Through the YAML's ``pretrainer`` when it has one (SpeechBrain's
        ``Pretrainer``, a ``RemapHeadHook`` on the head; a path whose loadable
        the YAML could not build, like the head sized from the data, loads into
        the module of the same name); else from ``source`` (default
        ``pretrained_path``) with :func:`xlt_plugin.pretrained.transfer_weights`.

        Every call starts from the head's own initialisation (kept at the
        first), so a zero-shot test and the fit get the same remedied head.
        """
        head_params = list(self.modules.head.parameters())
        if not hasattr(self, "_fresh_head"):
            self._fresh_head = [p.detach().clone() for p in head_params]
        else:
            with torch.no_grad():
                for param, fresh in zip(head_params, self._fresh_head, strict=True):
                    param.copy_(fresh)
        pretrainer = self.settings.pretrainer
        if pretrainer is not None:
            from xlt_plugin.pretrained import run_pretrainer

            self.remap_report = run_pretrainer(pretrainer, self.modules)
            logger.info("Loaded the pretrainer's files: %s", self.remap_report)
            return self.remap_report
        from xlt_plugin.pretrained import transfer_weights

        source = source or self.settings.pretrained_path
        report_path = None
        if self.settings.output_folder:
            report_path = Path(self.settings.output_folder) / "remap_report.json"
        self.remap_report = transfer_weights(
            source,
            encoder=self.modules.encoder,
            head=self.modules.head,
            normalize=self.modules["normalize"]
            if "normalize" in self.modules
            else None,
            target_tokens=self.tokenizer,
            strategy=self.settings.remap_strategy,
            savedir=self.settings.save_folder,
            report_path=report_path,
        )
        self._adjust_head_rows(report_path)
        logger.info("Transferred from %s: %s", source, self.remap_report)
        return self.remap_report

    def _adjust_head_rows(self, report_path) -> None:
        """The row-level remedies of the settings on a head loaded without a
        pretrainer (a ``pretrainer``'s ``RemapHeadHook`` applies its own)."""
        from xlt_plugin.remap import adjust_head

        s = self.settings
        if s.head_calibration == "none" and s.head_blend_alpha == 1.0 and s.copy_blank:
            return
        adjust_head(
            self.modules.head,
            *(self._fresh_head + [None])[:2],
            self.remap_report,
            s.blank_index,
            calibrate=s.head_calibration,
            blend_alpha=s.head_blend_alpha,
            copy_blank=s.copy_blank,
        )
        self._write_remap_report(report_path)

    def _write_remap_report(self, report_path) -> None:
        if report_path is not None and self.remap_report is not None:
            if if_main_process():
                import json

                Path(report_path).write_text(
                    json.dumps(
                        self.remap_report.as_dict(), ensure_ascii=False, indent=2
                    )
                    + "\n",
                    encoding="utf-8",
                )

    def calibrate_head_temperature(self) -> float:
        """Fit one temperature for the head's mapped rows (``head_calibration:
        temperature``) on the first ``calibration_batches`` training batches.

        The encoder runs in eval mode without gradients; the logits of the rows
        the remap filled are divided by the temperature with the lowest CTC
        loss (:func:`xlt_plugin.remap.fit_temperature`), which keeps their
        argmax on every input. The random-number state is restored afterwards.

        Returns
        -------
        float
            The temperature (1.0 when there is no remap report or loader).
        """
        import random

        from xlt_plugin.remap import apply_temperature, fit_temperature

        report = getattr(self, "remap_report", None)
        loader = getattr(self, "train_loader", None)
        if report is None or loader is None:
            logger.warning("head_calibration: temperature needs a remap and data.")
            return 1.0
        captured = []
        hook = self.modules.head.register_forward_hook(
            lambda _m, _i, out: captured.append(out.detach())
        )
        states = torch.get_rng_state(), random.getstate()
        training = self.modules.training
        self.modules.eval()
        batches = []
        try:
            with torch.no_grad():
                for i, batch in enumerate(loader):
                    if i >= self.settings.calibration_batches:
                        break
                    captured.clear()
                    _, wav_lens = self.compute_forward(batch, sb.Stage.VALID)
                    logits = captured[-1]
                    tokens, token_lens = batch.tokens
                    tokens = tokens.to(logits.device)
                    frames = torch.round(wav_lens.to(logits.device) * logits.shape[1])
                    lengths = torch.round(
                        token_lens.to(logits.device) * tokens.shape[1]
                    )
                    batches.append(
                        (logits, frames.long(), tokens.long(), lengths.long())
                    )
        finally:
            hook.remove()
            self.modules.train(training)
            torch.set_rng_state(states[0])
            random.setstate(states[1])
        temperature = fit_temperature(
            batches, report.mapped_rows, self.settings.blank_index
        )
        apply_temperature(self.modules.head, report.mapped_rows, temperature)
        report.remedies = {**report.remedies, "temperature": temperature}
        logger.info("Head temperature of the mapped rows: %.3g", temperature)
        if self.settings.output_folder:
            self._write_remap_report(
                Path(self.settings.output_folder) / "remap_report.json"
            )
        return temperature

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
        self.transfer_from(self.settings.pretrained_path)
        results = {}
        self.zero_shot = True
        try:
            for name, test_set in test_sets.items():
                self.eval_tag = name
                self.evaluate(test_set, test_loader_kwargs=dict(loader_kwargs or {}))
                results[name] = self.scores.summarize()
        finally:
            self.zero_shot = False
            self.eval_tag = None
        return results

    def _save_intra_epoch_ckpt(self):
        """SpeechBrain's mid-epoch save; a full disk stops with what to free.

        Under DDP the running train loss is first replaced, in every process, by
        its mean over the processes: the checkpoint holds process 0's value only,
        which every process loads on resume. The epoch's logged loss (the mean of
        the processes' running means) is unchanged, as running means are linear.
        """
        self.avg_train_loss = _mean_over_processes(self.avg_train_loss)
        save_or_explain(self.checkpointer, super()._save_intra_epoch_ckpt)

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Load the best checkpoint, except for a zero-shot evaluation.

        Overridden (SpeechBrain's hook): a zero-shot test must not load a
        checkpoint, and broken checkpoints are set aside before one is chosen.
        """
        if not self.zero_shot:
            self._set_aside_broken_checkpoints()
            super().on_evaluate_start(max_key=max_key, min_key=min_key)

    # ----------------------------------------------------------------- stages
    def on_stage_start(self, stage, epoch=None):
        """Reset metrics; in training apply this epoch's unfreezing stage."""
        self.stage_start = time.time()
        if stage == sb.Stage.TRAIN:
            unfreezing = self.settings.unfreezing
            if unfreezing is not None:
                newly = unfreezing.apply(self.modules, epoch=epoch)
                if newly:
                    logger.info("Epoch %s: unfroze %d tensors", epoch, len(newly))
            self._frozen_bn_pending = True
        else:
            self.scores = ErrorRates(
                self.settings.cer_computer, self.settings.error_rate_computer
            )

    def on_fit_batch_start(self, batch, should_step):
        """Keep fully frozen BatchNorm layers in eval mode after ``.train()``.

        The first batch after resuming from an intra-epoch checkpoint also gets
        the random-number states that checkpoint saved.
        """
        self.random_states.apply_pending()
        if self._frozen_bn_pending:
            set_frozen_batchnorm_eval(self.modules)
            self._frozen_bn_pending = False

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, write ``metrics.jsonl``, checkpoint on the best dev CER."""
        seconds = time.time() - self.stage_start
        if stage != sb.Stage.TEST:
            self.clock.elapsed += seconds
        stats = {"loss": float(stage_loss)}
        if stage != sb.Stage.TRAIN:
            stats.update(self.scores.summarize())
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
            train_logger = self.settings.train_logger
            if train_logger is not None:
                train_logger.log_stats(
                    stats_meta={"epoch": epoch, "lr": lr},
                    train_stats=self.train_stats,
                    valid_stats=stats,
                )
            self._log_tensorboard(
                epoch, {"lr": lr}, train_stats=self.train_stats, valid_stats=stats
            )
            # Metrics line first: a kill between the two leaves a line that the
            # resumed run trims (its epoch is past the last checkpoint).
            self._write_metrics(epoch, name, stats, seconds)
            if self.checkpointer is not None:
                save_or_explain(
                    self.checkpointer,
                    self.checkpointer.save_and_keep_only,
                    meta={BEST_KEY: stats[BEST_KEY], "epoch": epoch},
                    min_keys=[BEST_KEY],
                    num_to_keep=self.settings.ckpt_keep,
                )
            return
        train_logger = self.settings.train_logger
        if train_logger is not None:
            train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
        suffix = "_zero_shot" if self.zero_shot else ""
        if self.eval_tag not in (None, "test"):  # one curve per test set
            suffix = f"_{self.eval_tag}{suffix}"
        self._log_tensorboard(
            self.hparams.epoch_counter.current,
            {},
            test_stats={f"{k}{suffix}": v for k, v in stats.items()},
        )
        self._write_metrics(self.hparams.epoch_counter.current, name, stats, seconds)
        wer_file = self.settings.test_wer_file
        if wer_file and if_main_process():
            with open(wer_file, "w", encoding="utf-8") as w:
                self.scores.wer.write_stats(w)

    # ---------------------------------------------------------------- metrics
    def _log_tensorboard(self, epoch, stats_meta: dict, **stats) -> None:
        """Epoch-level scalars to the ``tensorboard_logger`` (if any), at step
        ``epoch``, then flushed so that the curves are live.

        SpeechBrain's ``TensorboardLogger`` numbers its points by counting its
        calls, which would restart at 1 in a resumed run: its counters are set
        to the epoch first.
        """
        logger_ = self.settings.tensorboard_logger
        if logger_ is None:
            return
        step = int(epoch or 0)
        logger_.global_step["meta"] = step - 1
        for name, values in stats.items():
            counters = logger_.global_step[name.replace("_stats", "")]
            for key in values or {}:
                counters[key] = step - 1
        logger_.log_stats(stats_meta={"epoch": step, **stats_meta}, **stats)
        if logger_.writer is not None:
            logger_.writer.flush()

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
        append_metrics(self.metrics_path, record)

    def _trim_metrics(self, last_epoch: int):
        """Drop train/valid lines past the recovered checkpoint (a killed run)."""
        trim_metrics(self.metrics_path, last_epoch)


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


CACHE_CONFLICT = (
    "`wav_augmentation` (waveform augmentation, on with `augment: True`) cannot "
    "apply to cached features (`feature_cache` is set): set `feature_cache: null`, "
    "or `wav_augmentation: null` to keep only the feature-domain `augmentation`."
)


def augmentation_if(on: bool, augmenter):
    """A recipe's augmentation switch: ``augmenter`` when ``on``, else None.

    Recipes define SpeechBrain ``Augmenter`` objects and select them with one
    switch: ``augmentation: !apply:xlt_plugin.brain.augmentation_if [<augment>,
    <fea_augmenter>]``.

    Example
    -------
    >>> augmentation_if(False, "augmenter") is None, augmentation_if(True, "a")
    (True, 'a')
    """
    if not isinstance(on, bool):
        raise ValueError(f"`augment` must be True or False, not {on!r}.")
    return augmenter if on else None


def tensorboard_logger_if(on: bool, save_dir: str | os.PathLike):
    """A recipe's live-curves switch: SpeechBrain's ``TensorboardLogger`` writing
    to ``save_dir`` when ``on``, else None.

    Built only when on, so that a run without it needs no ``tensorboard``
    package and writes no folder. In YAML: ``tensorboard_logger:
    !apply:xlt_plugin.brain.tensorboard_logger_if [<tensorboard>,
    <output_folder>/tensorboard]``; ``CTCTransferBrain`` logs to it beside
    ``train_logger``.

    Arguments
    ---------
    on : bool
        The recipe's ``tensorboard`` key.
    save_dir : path
        The folder of the events files.

    Returns
    -------
    speechbrain.utils.train_logger.TensorboardLogger or None

    Example
    -------
    >>> tensorboard_logger_if(False, "unused") is None
    True
    """
    if not isinstance(on, bool):
        raise ValueError(f"`tensorboard` must be True or False, not {on!r}.")
    if not on:
        return None
    from speechbrain.utils.train_logger import TensorboardLogger

    from xlt_plugin.extras import require

    require("tensorboard", "`tensorboard: True` (live training curves)")
    return TensorboardLogger(str(save_dir))


def _full_precision(device_type: str):
    """A region where autocast is off (float32 math) on ``device_type``."""
    return torch.autocast(device_type=device_type, enabled=False)


def _augment(augment, x: torch.Tensor, lens: torch.Tensor):
    """Applies an augmenter: SpeechBrain's ``Augmenter`` takes and returns data
    and lengths; another callable (e.g. a bare ``SpectrogramDrop``) takes the
    data alone and keeps the lengths."""
    from speechbrain.augment.augmenter import Augmenter

    if isinstance(augment, Augmenter):
        return augment(x, lens)
    return augment(x), lens


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


def _longest_seconds(batch, settings: TransferSettings) -> float | None:
    """Seconds of the longest clip in a padded batch (waveforms or features)."""
    if hasattr(batch, "sig"):
        return batch.sig[0].shape[-1] / settings.sample_rate
    if hasattr(batch, "feats"):
        return batch.feats[0].shape[1] * settings.hop_length / 1000
    return None
