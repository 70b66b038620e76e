"""T5's bucketed relative position bias: the buckets by hand, against Hugging Face, and with a cache offset."""

from __future__ import annotations

import os

import pytest
import torch

from archlab.errors import ConfigError
from archlab.nn import RelativePositionBias, relative_position_bucket


def test_buckets_by_hand_bidirectional():
    # 8 buckets, bidirectional: 4 per direction, 2 of them exact (distances 0, 1), then logarithmic up to 20.
    n = torch.tensor([0, -1, -2, -3, -5, -9, -19, -20, -500, 1, 2, 9, 500])
    got = relative_position_bucket(n, bidirectional=True, num_buckets=8, max_distance=20).tolist()
    # d >= 2: 2 + floor(ln(d / 2) / ln(10) * 2) -> d=2: 2, 3: 2, 5: 2, 9: 3, 19: 3, 20: 4 -> capped at 3.
    assert got == [0, 1, 2, 2, 2, 3, 3, 3, 3, 4 + 1, 4 + 2, 4 + 3, 4 + 3]  # keys after the query: +4


def test_buckets_by_hand_causal():
    # Causal: all 8 buckets look back; 4 exact, then logarithmic from 4 to 20; the future is distance 0.
    n = torch.tensor([0, -1, -3, -4, -8, -19, -100, 1, 7])
    got = relative_position_bucket(n, bidirectional=False, num_buckets=8, max_distance=20).tolist()
    # d >= 4: 4 + floor(ln(d / 4) / ln(5) * 4) -> d=4: 4, 8: 5, 19: 7 (3.87 -> 7), 100: capped at 7.
    assert got == [0, 1, 3, 4, 5, 7, 7, 0, 0]


@pytest.mark.parametrize("bidirectional", [True, False])
def test_buckets_grow_with_distance_and_saturate(bidirectional):
    n = -torch.arange(0, 300)
    b = relative_position_bucket(n, bidirectional=bidirectional, num_buckets=32, max_distance=128)
    assert (b.diff() >= 0).all()  # farther never maps to a nearer bucket
    last = (16 if bidirectional else 32) - 1
    assert (b[128:] == last).all()  # every offset beyond max_distance shares the last bucket
    assert b.unique().tolist() == list(range(last + 1))  # and every bucket is used on the way
    assert b[:8].tolist() == list(range(8))  # exact for small offsets (T5: half of each direction's buckets)


def test_bucket_equals_hugging_face_t5():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    n = torch.arange(-300, 300)[:, None] - torch.arange(0, 7)[None, :]
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20), (10, 17)):
            ours = relative_position_bucket(n, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance)
            ref = t5.T5Attention._relative_position_bucket(n, bidirectional=bidirectional, num_buckets=buckets,
                                                           max_distance=distance)
            assert torch.equal(ours, ref)


def test_bias_is_a_table_lookup_shared_by_query_key_offset():
    bias = RelativePositionBias(8, 3, max_distance=20, bidirectional=True)
    with torch.no_grad():
        bias.weight.copy_(torch.arange(24.0).view(8, 3))
    b = bias(4, 6)  # (1, nh, T, S)
    assert b.shape == (1, 3, 4, 6)
    # Every (i, j) with the same j - i gets the same value; head h reads column h of the table.
    assert b[0, 1, 0, 1] == b[0, 1, 2, 3] == bias.weight[5, 1]  # j - i = +1 -> bucket 4 + 1
    assert b[0, 2, 3, 0] == bias.weight[2, 2]  # j - i = -3 -> bucket 2


def test_offset_gives_the_rows_of_a_full_pass():
    # Cached decoding: the query at position 4 (offset 4) sees keys 0..4 with the bias of row 4 of a full pass.
    bias = RelativePositionBias(8, 2, max_distance=20, bidirectional=False)
    torch.nn.init.normal_(bias.weight)
    full = bias(5, 5)
    assert torch.equal(bias(1, 5, offset=4), full[:, :, 4:5])
    assert torch.equal(bias(2, 5, offset=3), full[:, :, 3:5])


def test_gradient_reaches_the_table():
    bias = RelativePositionBias(8, 2, max_distance=20)
    bias(3, 3).sum().backward()
    assert bias.weight.grad is not None and bias.weight.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="max_distance must exceed the 2 exact buckets, got max_distance=2"):
        RelativePositionBias(8, 2, max_distance=2)
    with pytest.raises(ConfigError, match="num_buckets must be >= 4, got 3"):
        RelativePositionBias(3, 2)
