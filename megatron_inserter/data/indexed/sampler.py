"""Megatron-style pretraining batch sampler: sequential over the (already shuffled) dataset, split
across data-parallel ranks, and resumable from a consumed-samples count.

Resuming from ``consumed_samples = N`` yields exactly the micro-batches the original run would have
yielded after N samples, for any data-parallel size as long as the global order is the same.
"""

from __future__ import annotations

from collections.abc import Iterator


class PretrainingBatchSampler:
    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 data_parallel_rank: int = 0, data_parallel_size: int = 1, drop_last: bool = True) -> None:
        if total_samples <= 0:
            raise ValueError(f"no samples to draw from (total_samples={total_samples})")
        if micro_batch_size <= 0 or data_parallel_size <= 0:
            raise ValueError("micro_batch_size and data_parallel_size must be positive")
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise ValueError(f"data_parallel_rank {data_parallel_rank} not in [0, {data_parallel_size})")
        if consumed_samples < 0 or consumed_samples > total_samples:
            raise ValueError(f"consumed_samples {consumed_samples} is outside [0, {total_samples}]: the "
                             f"checkpoint belongs to a run with more data")
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.data_parallel_rank = data_parallel_rank
        self.data_parallel_size = data_parallel_size
        self.drop_last = drop_last
        self.global_micro_batch = micro_batch_size * data_parallel_size

    def __len__(self) -> int:
        remaining = self.total_samples - self.consumed_samples
        full, rest = divmod(remaining, self.global_micro_batch)
        return full + (1 if rest and not self.drop_last and self._share(rest) else 0)

    def _share(self, n: int) -> range:
        """This rank's slice of a (possibly short) final global micro-batch of n samples."""
        per_rank = -(-n // self.data_parallel_size)
        start = self.data_parallel_rank * per_rank
        return range(start, min(start + per_rank, n))

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.data_parallel_rank * self.micro_batch_size
        start = self.consumed_samples
        while start + self.global_micro_batch <= self.total_samples:
            yield list(range(start + lo, start + lo + self.micro_batch_size))
            start += self.global_micro_batch
        rest = self.total_samples - start
        if rest and not self.drop_last:
            share = self._share(rest)
            if len(share):
                yield [start + i for i in share]
