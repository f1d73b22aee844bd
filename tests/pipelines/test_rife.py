"""RIFE 4.6's IFNet (pipelines.rife): weights in the published layout load strictly, anything else is refused
with a message naming the expected version; and what the network computes, checked with weights built so
that its answer is known (zero flow: a cross-fade; a constant flow: a shift), through padding and cropping."""

import io

import numpy as np
import pytest
import torch

from pipelines.rife import PAD_MULTIPLE, RIFE_VERSION, RifeWeightsError, load_rife
from pipelines.rife.ifnet import IFNet, RifeInterpolator
from tests.support.fakes import rife_weights_file


def frames(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def saved(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_weights_in_the_published_layout_load_strictly(tmp_path, prefix):
    path = rife_weights_file(tmp_path / "flownet.pkl", seed=3, prefix=prefix)
    model = load_rife(path.read_bytes())
    assert model.version == RIFE_VERSION == "4.6"
    state = torch.load(path, weights_only=True)
    loaded = model.net.state_dict()
    assert len(state) == len(loaded) == 120
    assert all(torch.equal(loaded[k[len(prefix):]], v) for k, v in state.items())  # every tensor, as saved


def test_another_layout_is_refused_naming_the_expected_version():
    good = IFNet().state_dict()
    later = {**good, "encode.cnn0.weight": torch.zeros(16, 3, 3, 3)}  # RIFE 4.7+ has a feature head
    del later["block3.lastconv.0.bias"]
    with pytest.raises(RifeWeightsError) as e:
        load_rife(saved(later))
    message = str(e.value)
    assert message.startswith("not RIFE 4.6 weights (Practical-RIFE 4.6 flownet.pkl")
    assert "1 missing keys (block3.lastconv.0.bias)" in message and "1 unexpected keys (encode.cnn0.weight)" in message
    assert "RIFE 4.7 and later" in message

    wider = {**good, "block0.lastconv.0.weight": torch.zeros(192, 52, 4, 4)}  # 4 * 13 outputs, as 4.2x has
    with pytest.raises(RifeWeightsError, match=r"1 shapes differ \(block0.lastconv.0.weight \(192, 52, 4, 4\) "
                                               r"\(expected \(192, 24, 4, 4\)\)\)"):
        load_rife(saved(wider))
    with pytest.raises(RifeWeightsError, match="not RIFE 4.6 weights: not a PyTorch state dict"):
        load_rife(b"not a pickle at all")
    with pytest.raises(RifeWeightsError, match="holds a list, not a state dict"):
        load_rife(saved([torch.zeros(1)]))  # type: ignore[arg-type]


def constructed(edit) -> RifeInterpolator:  # type: ignore[no-untyped-def]
    """Random weights whose last convolutions are zeroed (no flow, mask logit 0), then `edit(net)`."""
    torch.manual_seed(0)
    net = IFNet()
    with torch.no_grad():
        for i in range(4):
            last = getattr(net, f"block{i}").lastconv[0]
            last.weight.zero_()
            last.bias.zero_()
        edit(net)
    return RifeInterpolator(net)


@pytest.mark.parametrize("size", [(64, 96), (50, 70)])  # a multiple of 32, and one padded then cropped back
def test_no_flow_and_an_even_mask_give_the_cross_fade_at_every_time(size):
    a, b = frames(*size)
    out = constructed(lambda net: None).between(a, b, [0.25, 0.5, 0.75])
    assert out.shape == (3, *size, 3) and out.dtype == np.uint8
    fade = (a.astype(np.float64) + b) / 2  # sigmoid(0) = 1/2 whatever t is: RIFE's mask, not t, blends
    assert all(np.abs(o - fade).max() <= 0.5 for o in out)


@pytest.mark.parametrize("size", [(64, 96), (50, 70)])
def test_a_constant_flow_shifts_the_frame_the_mask_picks(size):
    """Block 0 works at 1/8: a bias of 0.5 on the flow channel it outputs is 4 px at full size. F_t->0's x
    (channel 0) with mask logit +30 picks I0; F_t->1's y (channel 3) with -30 picks I1. Channels come out of a
    PixelShuffle(2): output channel c is transposed-conv channels 4c .. 4c + 3."""
    a, b = frames(*size)

    def bias(channel: int, flow: float, mask: float):  # type: ignore[no-untyped-def]
        def edit(net):  # type: ignore[no-untyped-def]
            net.block0.lastconv[0].bias[4 * channel:4 * channel + 4] = flow
            net.block0.lastconv[0].bias[16:20] = mask
        return edit

    out0 = constructed(bias(0, 0.5, 30.0)).between(a, b, [0.5])[0]
    shifted = np.concatenate([a[:, 4:], np.repeat(a[:, -1:], 4, axis=1)], axis=1)  # out(x, y) = I0(x + 4, y)
    assert np.abs(out0.astype(int) - shifted).max() <= 1
    out1 = constructed(bias(3, -0.5, -30.0)).between(a, b, [0.5])[0]
    shifted = np.concatenate([np.repeat(b[:1], 4, axis=0), b[:-4]], axis=0)  # out(x, y) = I1(x, y - 4)
    assert np.abs(out1.astype(int) - shifted).max() <= 1


def test_random_weights_batch_the_times_independently_and_the_time_is_an_input():
    torch.manual_seed(1)
    model = RifeInterpolator(IFNet())
    a, b = frames(37, 45)  # padded to 64 x 64
    assert PAD_MULTIPLE == 32
    batch = model.between(a, b, [0.25, 0.5, 0.75])
    assert batch.shape == (3, 37, 45, 3)
    for k, t in enumerate([0.25, 0.5, 0.75]):  # each item as if alone: nothing mixes across the batch
        assert np.abs(batch[k].astype(int) - model.between(a, b, [t])[0]).max() <= 1
    assert np.abs(batch[0].astype(int) - batch[2]).mean() > 1.0  # t reaches the network
