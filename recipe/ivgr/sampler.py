"""Pair-preserving, seeded, resumable sampler for the training dataloader.

verl 0.9.1 builds its train dataloader with a plain random/sequential row sampler and offers no
sampler plug-in: ``_init_dataloader`` (verl/trainer/ppo/v1/trainer_base.py:708) always passes
``create_rl_sampler(data, dataset)`` (verl/trainer/ppo/utils.py:140: a seeded ``RandomSampler`` with
``data.shuffle``, else ``SequentialSampler``). The trainer subclass replaces the dataloader after
``super()._init_dataloader()``::

    self.train_dataloader = build_train_dataloader(self.train_dataset, self.config.data, collate_fn)

`PairBatchSampler` yields dataset row indices in blocks of exactly ``batch_size`` (to be used with
``batch_size=batch_size, drop_last=True``, which is what `build_train_dataloader` sets up):

- The dataset's ``units`` (`DualStreamDataset.units`: a sample's rows, ``(2k, 2k+1)`` for a
  grounded+textual pair, ``(i,)`` otherwise) are permuted per epoch with a generator seeded by
  ``(seed, epoch)``: deterministic, different every epoch, identical across runs and resumes.
- Units are packed in that order into batches of exactly ``batch_size`` rows, never splitting a
  unit: the packer always takes the earliest unit that still lets every remaining batch of the epoch
  be filled. So when one slot is left and the next unit is a pair, the next one-row unit is pulled
  forward, and a single is postponed when the batches after it will need it.
- Every epoch has the same number of batches (`batches_per_epoch`): the most the units can fill.
  The units that cannot complete a batch sit out at the end of the epoch's order. With an even
  ``batch_size`` that is fewer than ``batch_size`` rows (one single when their number is odd), so
  there are ``len(dataset) // batch_size`` batches, the count verl's trainer assumes for
  ``steps_per_epoch``. An odd ``batch_size`` needs an odd number of one-row units in every batch;
  with few of them many pairs sit out (logged as a warning): use an even batch size.
- Resumable: the iterator and the sampler report ``{seed, epoch, position, ...}`` (position = rows
  yielded in that epoch); torchdata's `StatefulDataLoader` stores them in its ``state_dict()`` (verl's
  ``data.pt``) and a fresh dataloader that loads it continues at the exact next batch, also across an
  epoch boundary. Each iterator takes the next epoch (or a loaded state) when it yields its first
  index, so iterators that torch creates and drops without using them do not skip an epoch.

Config keys (under ``data:``) read by `build_train_dataloader`: ``train_batch_size`` (or
``gen_batch_size`` when set; the rows of one dataloader fetch), ``seed`` (null means 0),
``ivgr_shuffle`` (default true; false walks the units in dataset order every epoch; independent of
``data.shuffle``, which the recipe keeps false so that verl's own sampler stays out of the way) and
``dataloader_num_workers``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def row_layout(kinds: Sequence[str], streams: Sequence[str]) -> tuple[list[tuple[int, str]], list[tuple[int, ...]]]:
    """The dataset's rows for samples of these `kinds` with these enabled `streams`
    (`reward_score.streams.streams_of`): (sample index, stream) per row, samples with two rows first (at
    2k, 2k+1), one-row samples after; and the units, each sample's row indices, that `PairBatchSampler`
    keeps together."""
    from reward_score.streams import streams_of

    pairs: list[tuple[int, str]] = []
    singles: list[tuple[int, str]] = []
    for sample, kind in enumerate(kinds):
        rows = streams_of(kind, streams)
        (pairs if len(rows) == 2 else singles).extend((sample, stream) for stream in rows)
    n_pairs = len(pairs) // 2
    units = [(2 * k, 2 * k + 1) for k in range(n_pairs)] + [(i,) for i in range(2 * n_pairs, len(pairs) + len(singles))]
    return pairs + singles, units


class _EpochIterator(Iterator[int]):
    """Iterator over one epoch's plan; its state is (epoch, position).

    The epoch is claimed at the first `__next__` (or set by `load_state_dict`), not at creation:
    torch's multi-process dataloader calls `iter(sampler)` twice per dataloader iterator and drops
    the first one, which must not use up an epoch.
    """

    def __init__(self, sampler: PairBatchSampler):
        self.sampler = sampler
        self.epoch: int | None = None
        self.position = 0
        self.plan: np.ndarray | None = None

    def _start(self, epoch: int, position: int) -> None:
        self.epoch = int(epoch)
        self.plan = self.sampler.plan(self.epoch)
        self.position = min(max(int(position), 0), len(self.plan))
        self.sampler._next_epoch = self.epoch + 1
        self.sampler._pending = None
        self.sampler._live = self

    def _claim(self) -> None:
        self._start(*self.sampler._upcoming())

    def __iter__(self) -> _EpochIterator:
        return self

    def __next__(self) -> int:
        if self.epoch is None:
            self._claim()
        if self.position >= len(self.plan):
            raise StopIteration
        self.position += 1
        return int(self.plan[self.position - 1])

    def state_dict(self) -> dict[str, Any]:
        if self.epoch is None:
            return self.sampler._state(*self.sampler._upcoming())
        return self.sampler._state(self.epoch, self.position)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._start(*self.sampler._checked(state_dict))


class PairBatchSampler(Sampler[int]):
    """Row indices, whole units per batch, seeded per epoch, resumable (see module doc).

    units: the rows of each sample, e.g. ``[(0, 1), (2, 3), (4,)]``; batch_size: rows per batch.
    """

    def __init__(self, units: Sequence[Sequence[int]], batch_size: int, seed: int = 0, shuffle: bool = True):
        self.units = [tuple(int(i) for i in unit) for unit in units]
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        sizes = {len(u) for u in self.units}
        if not sizes <= {1, 2}:
            raise ValueError(f"units must have one or two rows, got sizes {sorted(sizes)}")
        self._is_pair = np.array([len(u) == 2 for u in self.units], dtype=bool)
        self.num_pairs = int(self._is_pair.sum())
        self.num_singles = len(self.units) - self.num_pairs
        self.num_rows = 2 * self.num_pairs + self.num_singles
        if self.batch_size == 1 and self.num_pairs:
            raise ValueError("batch_size 1 cannot hold a sample's two streams (data.gen_batch_size must stay unset)")
        self.batches_per_epoch = self._max_batches()
        if self.batches_per_epoch == 0:
            hint = " (an odd batch size needs one-row samples)" if self.batch_size % 2 else ""
            raise ValueError(f"{self.num_rows} rows in {len(self.units)} samples ({self.num_pairs} pairs) fill no "
                             f"batch of {self.batch_size}{hint}: use an even data.train_batch_size")
        unused = self.num_rows - self.batches_per_epoch * self.batch_size
        if unused >= self.batch_size:
            logger.warning("batch size %d: every batch needs an odd number of one-row samples, so only %d batches "
                           "fit per epoch and %d of %d rows sit out each epoch; use an even batch size",
                           self.batch_size, self.batches_per_epoch, unused, self.num_rows)
        self._next_epoch = 0
        self._pending: tuple[int, int] | None = None
        self._live: _EpochIterator | None = None
        self._plans: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ plan of one epoch
    def _fits(self, singles: int, pairs: int, batches: int, space: int) -> bool:
        """Can `singles` one-row and `pairs` two-row units (not all needed) fill the `space` rows left in
        the current batch plus `batches` more full batches exactly?"""
        if space == 0:
            if batches == 0:
                return True
            batches, space = batches - 1, self.batch_size
        need = batches * self.batch_size + space
        # every batch with an odd number of free rows needs at least one single
        low = (batches if self.batch_size % 2 else 0) + space % 2
        high = min(singles, need)
        high -= (high - need) % 2  # singles used have the parity of the rows to fill
        return high >= low and (need - high) // 2 <= pairs

    def _max_batches(self) -> int:
        """Most batches one epoch can fill (the same for every order)."""
        for batches in range(self.num_rows // self.batch_size, 0, -1):
            if self._fits(self.num_singles, self.num_pairs, batches - 1, self.batch_size):
                return batches
        return 0

    def plan(self, epoch: int) -> np.ndarray:
        """All row indices of `epoch`, batch after batch (`batches_per_epoch` x `batch_size` of them)."""
        if epoch not in self._plans:
            if len(self._plans) >= 4:
                self._plans.pop(next(iter(self._plans)))
            self._plans[epoch] = self._pack(epoch)
        return self._plans[epoch]

    def _pack(self, epoch: int) -> np.ndarray:
        """Walk the epoch's unit order, always taking the earliest unit that still lets every remaining
        batch be filled exactly: when one slot is left and a pair comes next, the next single is pulled
        forward; the units that cannot fill a whole batch any more sit out at the end."""
        n = len(self.units)
        order = np.random.default_rng([self.seed, int(epoch)]).permutation(n) if self.shuffle else np.arange(n)
        singles = [int(u) for u in order if not self._is_pair[u]]
        pairs = [int(u) for u in order if self._is_pair[u]]
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        next_single = next_pair = 0
        batches_left, space = self.batches_per_epoch - 1, self.batch_size
        out: list[int] = []
        while batches_left >= 0:
            s_left, p_left = len(singles) - next_single, len(pairs) - next_pair
            options = []
            if s_left and self._fits(s_left - 1, p_left, batches_left, space - 1):
                options.append((rank[singles[next_single]], "single"))
            if p_left and space >= 2 and self._fits(s_left, p_left - 1, batches_left, space - 2):
                options.append((rank[pairs[next_pair]], "pair"))
            if not options:  # cannot happen: _max_batches guarantees a fill
                raise RuntimeError(f"pair packing stuck in epoch {epoch} (batch size {self.batch_size})")
            if min(options)[1] == "single":
                out.extend(self.units[singles[next_single]])
                next_single += 1
                space -= 1
            else:
                out.extend(self.units[pairs[next_pair]])
                next_pair += 1
                space -= 2
            if space == 0:
                batches_left, space = batches_left - 1, self.batch_size
        return np.asarray(out, dtype=np.int64)

    # ------------------------------------------------------------------ iteration and state
    def __iter__(self) -> _EpochIterator:
        return _EpochIterator(self)

    def _upcoming(self) -> tuple[int, int]:
        """(epoch, position) the next iterator starts at: a loaded state, else the next epoch."""
        return self._pending if self._pending is not None else (self._next_epoch, 0)

    def _under_way(self) -> _EpochIterator | None:
        live = self._live
        return live if live is not None and live.position < len(live.plan) and self._pending is None else None

    def __len__(self) -> int:
        """Rows of the epoch under way (or of the next one when none is)."""
        live = self._under_way()
        return len(live.plan) if live is not None else len(self.plan(self._upcoming()[0]))

    @property
    def epoch(self) -> int:
        """The epoch under way (or the next one when none is)."""
        live = self._under_way()
        return live.epoch if live is not None else self._upcoming()[0]

    def _state(self, epoch: int, position: int) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": int(epoch), "position": int(position), "batch_size": self.batch_size,
                "num_rows": self.num_rows, "num_units": len(self.units), "shuffle": self.shuffle}

    def state_dict(self) -> dict[str, Any]:
        """{epoch, position} of the last started iterator (else of what comes next), plus checks."""
        if self._pending is None and self._live is not None:
            return self._state(self._live.epoch, self._live.position)
        return self._state(*self._upcoming())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The next iterator continues at the stored epoch and position."""
        self._pending = self._checked(state_dict)

    def _checked(self, state: dict[str, Any]) -> tuple[int, int]:
        epoch, position = int(state["epoch"]), int(state["position"])
        if state.get("seed", self.seed) != self.seed or state.get("shuffle", self.shuffle) != self.shuffle:
            logger.warning("resuming with the checkpoint's sampler seed %s / shuffle %s (config: %s / %s)",
                           state.get("seed"), state.get("shuffle"), self.seed, self.shuffle)
            self.seed = int(state.get("seed", self.seed))
            self.shuffle = bool(state.get("shuffle", self.shuffle))
            self._plans.clear()
        same_data = (state.get("num_rows", self.num_rows), state.get("num_units", len(self.units)),
                     state.get("batch_size", self.batch_size)) == (self.num_rows, len(self.units), self.batch_size)
        if not same_data:
            logger.warning("dataset or batch size changed since the checkpoint (%s); restarting epoch %d from its "
                           "first batch", {k: state.get(k) for k in ("num_rows", "num_units", "batch_size")}, epoch)
            position = 0
        return epoch, position


def epochs_for_steps(total_steps: int, steps_per_epoch: int) -> int:
    """Epochs a run of `total_steps` needs at `steps_per_epoch` batches per epoch (rounded up)."""
    return -(-int(total_steps) // max(1, int(steps_per_epoch)))


def build_train_dataloader(dataset, data_config, collate_fn=None):
    """verl's `StatefulDataLoader` over `dataset` with a `PairBatchSampler` (see module doc).

    Datasets without `units` (plain RLHFDataset) are treated as one-row units.
    """
    from torchdata.stateful_dataloader import StatefulDataLoader

    if collate_fn is None:
        from verl.utils.dataset.rl_dataset import collate_fn
    batch_size = int(data_config.get("gen_batch_size", None) or data_config.get("train_batch_size"))
    units = getattr(dataset, "units", None)
    if units is None:
        units = [(i,) for i in range(len(dataset))]
    seed = data_config.get("seed", None)
    sampler = PairBatchSampler(units, batch_size, seed=0 if seed is None else int(seed),
                               shuffle=bool(data_config.get("ivgr_shuffle", True)))
    return StatefulDataLoader(dataset=dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                              num_workers=int(data_config.get("dataloader_num_workers", 0) or 0),
                              collate_fn=collate_fn)
