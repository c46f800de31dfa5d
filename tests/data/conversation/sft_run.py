"""The SFT recipe's training in a spawned process, recording what the loss is taken over."""

from __future__ import annotations


def sft_losses(rank, world_size, argv) -> dict:
    """Train with ``argv``; every micro-batch's targets and loss mask as collated, and the token count each
    loss call reported."""
    from megatron_inserter.training import data, trainer
    from tests.training.runs import train_result

    batches, counts = [], []
    collate = data.GapMasks.__call__

    def recording_collate(self, samples):
        batch = collate(self, samples)
        batches.append({k: batch[k].tolist() for k in ("labels", "loss_mask", "dataset_id", "num_padding")})
        return batch

    class RecordingLoss(trainer.LossFunction):
        def __call__(self, per_token_loss):
            total, count, report = super().__call__(per_token_loss)
            counts.append(int(count))
            return total, count, report

    data.GapMasks.__call__ = recording_collate
    trainer.LossFunction = RecordingLoss
    result = train_result(rank, world_size, argv)
    return {"history": result["history"], "batches": batches, "counts": counts}
