"""Clip packing: the shared time axis never lets a convolution read a neighbouring clip, and the attention
windows hold every clip once, within capacity, with a block-diagonal mask."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from megatron_inserter.models.clip_packing import ClipLayout, WindowPlan, conv_out, cu_seqlens, position_ids

MEL_FRAMES = [7, 1, 0, 12, 3000, 2, 9]
WINDOW = 3000


def _layout(mel_frames, stride=2):
    m = torch.tensor(mel_frames)
    kept = torch.where(m > 0, torch.clamp(m + 2, max=WINDOW), torch.zeros_like(m))
    conv1_valid = torch.minimum(torch.where(m > 0, m + 1, m), kept)
    return ClipLayout.build(kept, conv1_valid, conv_out(m, stride), stride), m, kept, conv1_valid


def _front_end(convs, mel, conv1_valid):
    """conv1 -> zero past the valid outputs -> conv2, on one clip alone (what packing must reproduce)."""
    conv1, conv2 = convs
    x = F.gelu(conv1(mel[None]))
    x[..., conv1_valid:] = 0
    return F.gelu(conv2(x))[0]


def test_blocks_start_on_the_stride_and_leave_a_zero_frame_between_clips():
    layout, _, kept, _ = _layout(MEL_FRAMES)
    offsets = layout.offsets.tolist()
    assert all(o % 2 == 0 for o in offsets)
    live = [(o, k) for o, k in zip(offsets, kept.tolist()) if k]
    for (o, k), (o_next, _) in itertools.pairwise(live):
        assert o_next >= o + k + 1
    index = layout.mel_index()
    assert index.numel() == int(kept.sum()) and index.unique().numel() == index.numel()
    assert not layout.conv1_mask()[index.max() + 1:].any()


def test_packed_convolutions_equal_each_clip_alone():
    torch.manual_seed(0)
    mels, d = 6, 5
    convs = (torch.nn.Conv1d(mels, d, 3, padding=1), torch.nn.Conv1d(d, d, 3, stride=2, padding=1))
    frames = [7, 1, 0, 12, 40, 2, 9]
    layout, m, kept, conv1_valid = _layout(frames)
    # Large neighbours: any leak across a boundary would show.
    clips = [torch.randn(mels, int(k)) * (1 + 50 * (i % 2)) for i, k in enumerate(kept.tolist())]
    axis = torch.zeros(mels, layout.length)
    axis[:, layout.mel_index()] = torch.cat(clips, dim=1)
    with torch.no_grad():
        x = F.gelu(convs[0](axis[None])) * layout.conv1_mask()[None, None].float()
        packed = F.gelu(convs[1](x))[0][:, layout.position_index()]
        start = 0
        for clip, t, c in zip(clips, layout.positions.tolist(), conv1_valid.tolist()):
            if t == 0:
                continue
            alone = _front_end(convs, clip, c)[:, :t]
            torch.testing.assert_close(packed[:, start:start + t], alone, rtol=1e-6, atol=1e-6)
            start += t
        assert start == packed.shape[1] == sum(conv_out(m, 2).tolist())


def test_window_plan_holds_every_clip_once_within_capacity():
    positions = [700, 1500, 1, 0, 800, 750, 300, 20, 1499]
    plan = WindowPlan.first_fit(positions, capacity=1500)
    fill = [0] * plan.num_windows
    for p, w, o in zip(positions, plan.window_of_clip, plan.offset_in_window):
        if p:
            fill[w] += p
            assert o + p <= plan.window_length <= 1500
    assert max(fill) == plan.window_length
    assert plan.num_windows == 4  # 5570 positions: the fewest windows of 1500 that can hold them
    slots = plan.slot_index(positions)
    assert slots.numel() == sum(positions) and slots.unique().numel() == slots.numel()
    with pytest.raises(ValueError, match="does not fit a window of 1500"):
        WindowPlan.first_fit([1501], capacity=1500)


def test_window_mask_is_block_diagonal_per_clip():
    positions = [3, 0, 2, 4]
    plan = WindowPlan.first_fit(positions, capacity=6)
    mask = plan.attention_mask(positions)
    assert mask.shape == (plan.num_windows, 1, plan.window_length, plan.window_length)
    slots = plan.slot_index(positions)
    clip = torch.repeat_interleave(torch.arange(4), torch.tensor(positions))
    flat = mask[:, 0]
    L = plan.window_length
    for a in range(len(slots)):
        for b in range(len(slots)):
            wa, wb = divmod(int(slots[a]), L), divmod(int(slots[b]), L)
            allowed = wa[0] == wb[0] and not flat[wa[0], wa[1], wb[1]]
            assert allowed == (clip[a] == clip[b])


def test_thd_boundaries_and_positions():
    positions = torch.tensor([3, 0, 2])
    assert cu_seqlens(positions).tolist() == [0, 3, 3, 5]
    assert cu_seqlens(positions).dtype == torch.int32
    assert position_ids(positions).tolist() == [0, 1, 2, 0, 1]
