import numpy as np

from tfvit.training.micro_batches import micro_batch_layout, micro_batch_size


def test_layout_against_cutting_the_batch_by_hand():
    """m is the smallest size that fits the batch into accum micro-batches; count the chunks of m that hold
    an example; padded = count * m, found by cutting range(B) into consecutive chunks of m."""
    for batch in range(1, 41):
        for accum in range(1, batch + 1):
            micro = min(m for m in range(1, batch + 1) if accum * m >= batch)
            chunks = [c for c in np.array_split(np.arange(batch), range(micro, batch, micro)) if len(c)]
            assert micro_batch_size(batch, accum) == micro
            assert micro_batch_layout(batch, accum) == (micro, len(chunks), len(chunks) * micro)
            assert len(chunks) <= accum


def test_the_studies_sizes():
    assert micro_batch_layout(128, 4) == (32, 4, 128)
    assert micro_batch_layout(10, 4) == (3, 4, 12)
    assert micro_batch_layout(9, 4) == (3, 3, 9)  # fewer non-empty micro-batches than accum
