"""Rehearsal: batches that mix the target corpus with replayed source utterances.

``replay_ratio`` is the fraction of *each batch's* utterances drawn from the
source corpus (``replay_data_folder``), not of each epoch's. Per batch because:

- every optimizer step sees both distributions, so no stretch of steps (a
  duration-sorted epoch's short clips, say) forgets the source alone;
- the ratio then holds on every prefix of an epoch, so a run killed and resumed
  mid-epoch, or a shortened epoch, still saw the asked mix;
- an epoch stays one pass over the target data, as without rehearsal: the
  learning-rate schedule and the epoch counts of runs with and without
  rehearsal compare directly.

The number of source utterances in batch ``i`` is
``floor((i + 1) * r * B) - floor(i * r * B)`` (``r`` the ratio, ``B`` the batch
size), so over any run of batches it is within one utterance of ``r * B`` per
batch. Source utterances are drawn without replacement from a permutation,
reshuffled when used up; the order of an epoch is a function of ``seed`` and the
epoch number only, read from the recipe's epoch counter. Nothing needs
checkpointing: a resumed epoch rebuilds the same batches, and SpeechBrain's
``SaveableDataLoader`` skips the ones already trained on.

Not under DDP yet: SpeechBrain would wrap the sampler in its
``DistributedSamplerWrapper`` (each process a share of the batches, padded by
repeating some, reshuffled with ``sorting: random``; a process dealt a single
batch gets its indices one by one), untested here, so the sampler refuses to be
built in a distributed process group rather than mis-sample silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fractions import Fraction

import torch
from torch.utils.data import Sampler

__all__ = ["ReplayBatchSampler", "replay_counts"]


def replay_counts(
    n_target: int, batch_size: int, ratio: float
) -> list[tuple[int, int]]:
    """(target, source) utterances of each batch of one epoch.

    Arguments
    ---------
    n_target : int
        Target utterances in the epoch (each used once).
    batch_size : int
        Utterances per batch.
    ratio : float
        Source fraction of each batch, in [0, 1).

    Returns
    -------
    list of (int, int)

    Example
    -------
    >>> replay_counts(n_target=9, batch_size=4, ratio=0.25)
    [(3, 1), (3, 1), (3, 1)]
    >>> replay_counts(n_target=5, batch_size=4, ratio=0.5)
    [(2, 2), (2, 2), (1, 1)]
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(
            f"replay_ratio must be in [0, 1) (the source share of each batch), "
            f"got {ratio}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    per_batch = Fraction(ratio).limit_denominator(10_000) * batch_size
    counts = []
    used = 0
    index = 0
    while used < n_target:
        source = math.floor((index + 1) * per_batch) - math.floor(index * per_batch)
        target = min(batch_size - source, n_target - used)
        if target < 1:  # ratio * batch_size >= batch_size - 1: keep one target
            source, target = batch_size - 1, min(1, n_target - used)
        if target < batch_size - source:  # the last, short batch: same mix
            source = round(target * ratio / (1.0 - ratio))
        counts.append((target, source))
        used += target
        index += 1
    return counts


class ReplayBatchSampler(Sampler):
    """Batches of dataset indices mixing target and replayed source utterances.

    For a ``DataLoader``'s ``batch_sampler`` (SpeechBrain: in
    ``train_dataloader_opts``). See the module docstring for the rule.

    Arguments
    ---------
    target_indices : sequence of int
        Indices of the target utterances, in the order they are used (e.g.
        sorted by duration).
    source_indices : sequence of int
        Indices of the source utterances.
    batch_size : int
        Utterances per batch.
    ratio : float
        Source fraction of each batch, in [0, 1).
    seed : int
        With the epoch, fixes the order.
    shuffle_target : bool
        Permute the target order each epoch too (``sorting: random``).
    epoch_counter : object, optional
        Anything with ``current`` (SpeechBrain's ``EpochCounter``): the epoch in
        progress is read from it. Without it, :meth:`set_epoch` sets the epoch.

    Example
    -------
    >>> sampler = ReplayBatchSampler(range(6), range(6, 10), batch_size=4,
    ...                              ratio=0.5, seed=1)
    >>> sampler.set_epoch(1)
    >>> batches = list(sampler)
    >>> len(batches), [sum(i >= 6 for i in b) for b in batches]
    (3, [2, 2, 2])
    >>> batches == list(sampler)  # same epoch, same batches
    True
    """

    def __init__(
        self,
        target_indices: Sequence[int],
        source_indices: Sequence[int],
        batch_size: int,
        ratio: float,
        seed: int = 0,
        shuffle_target: bool = False,
        epoch_counter=None,
    ) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            raise RuntimeError(
                "replay under DDP is not supported yet: run the rehearsal on one "
                "process (replay_ratio 0 under torchrun)."
            )
        self.target_indices = list(target_indices)
        self.source_indices = list(source_indices)
        if ratio > 0 and not self.source_indices:
            raise ValueError("replay_ratio > 0 but the source corpus has no utterance.")
        self.batch_size = int(batch_size)
        self.ratio = float(ratio)
        self.seed = int(seed)
        self.shuffle_target = bool(shuffle_target)
        self.epoch_counter = epoch_counter
        self.epoch = 0
        self.counts = replay_counts(len(self.target_indices), self.batch_size, ratio)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose batches the next iteration gives."""
        self.epoch = int(epoch)

    def current_epoch(self) -> int:
        """The epoch counter's epoch in progress, else the one set last."""
        if self.epoch_counter is not None:
            return int(self.epoch_counter.current)
        return self.epoch

    def __len__(self) -> int:
        return len(self.counts)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.current_epoch())
        targets = self.target_indices
        if self.shuffle_target:
            order = torch.randperm(len(targets), generator=generator).tolist()
            targets = [targets[i] for i in order]
        sources: list[int] = []
        start = 0
        for n_target, n_source in self.counts:
            batch = targets[start : start + n_target]
            start += n_target
            for _ in range(n_source):
                if not sources:  # a fresh permutation of the source corpus
                    order = torch.randperm(
                        len(self.source_indices), generator=generator
                    )
                    sources = [self.source_indices[i] for i in order.tolist()]
                batch.append(sources.pop())
            yield batch
