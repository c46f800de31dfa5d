"""The fused QKV layout: megatron-core's per-query-group order, and split inverts fuse."""

import torch

from megatron_inserter.convert import qkv


def test_fuse_orders_rows_per_query_group():
    heads, groups, d = 4, 2, 3
    q = torch.arange(heads * d).float()  # q head h holds rows h*d .. h*d+d-1
    k = 100 + torch.arange(groups * d).float()
    v = 200 + torch.arange(groups * d).float()
    fused = qkv.fuse(q, k, v, heads, groups, d).view(groups, heads // groups + 2, d)
    assert torch.equal(fused[0, 0], q[0:3]) and torch.equal(fused[0, 1], q[3:6])
    assert torch.equal(fused[0, 2], k[0:3]) and torch.equal(fused[0, 3], v[0:3])
    assert torch.equal(fused[1, 0], q[6:9]) and torch.equal(fused[1, 2], k[3:6]) and torch.equal(fused[1, 3], v[3:6])


def test_split_inverts_fuse_for_weights_and_biases():
    g = torch.Generator().manual_seed(0)
    for heads, groups, d in [(4, 2, 8), (6, 6, 4), (8, 1, 2)]:
        for rest in [(), (5,)]:
            q = torch.randn(heads * d, *rest, generator=g)
            k = torch.randn(groups * d, *rest, generator=g)
            v = torch.randn(groups * d, *rest, generator=g)
            back = qkv.split(qkv.fuse(q, k, v, heads, groups, d), heads, groups, d)
            assert all(torch.equal(a, b) for a, b in zip(back, (q, k, v)))
