"""Cost profiles: real architectures at a reduced size, FLOPs that match a hand count, and the file
steering_bench prices samples with."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cost_profile  # noqa: E402

from idguide_proving.costs import Profile  # noqa: E402


def conv(cin: int, cout: int, side: int, k: int = 3) -> int:
    return 2 * cin * cout * k * k * side * side


def test_flop_counts_equal_a_hand_count():
    layer = torch.nn.Conv2d(8, 16, 3, padding=1)
    x = torch.randn(1, 8, 10, 10, requires_grad=True)
    assert cost_profile.count_flops(lambda: layer(x)) == conv(8, 16, 10)
    # forward + backward with respect to the input only (weights frozen, as in guidance): twice the forward
    layer.requires_grad_(False)
    assert cost_profile.count_flops(lambda: layer(x).sum().backward()) == 2 * conv(8, 16, 10)


def test_the_tiny_decoder_at_64_px_costs_what_its_convolutions_cost(tmp_path):
    """TAESD's decoder (64 channels; 3, 3, 3, 1 blocks of three convolutions; ×2 upsampling between levels)
    counted by hand at 64 px, against the profile's count of the published architecture."""
    sides, blocks = (8, 16, 32, 64), (3, 3, 3, 1)
    hand = conv(4, 64, 8)
    for level, (side, n) in enumerate(zip(sides, blocks)):
        hand += n * 3 * conv(64, 64, side)
        hand += conv(64, 64, side * 2) if level < 3 else conv(64, 3, side)
    out = tmp_path / "sd15-64.json"
    assert cost_profile.main(["--family", "sd15", "--size", "64", "--max-tflops", "0.005", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["components"]) == set(cost_profile.COMPONENTS)
    components = data["components"]
    assert components["tiny_dec"]["flops"] == hand
    assert components["tiny_dec_grad"]["flops"] == 2 * hand
    assert components["tiny_dec"]["seconds"] > 0  # small enough to time here
    assert components["unet"]["seconds"] is None  # above --max-tflops: FLOPs only
    assert components["dec_grad"]["flops"] > 2 * components["tiny_dec_grad"]["flops"]
    # the scorer runs at its own input size, whatever the image size
    assert components["scorer"]["flops"] > components["unet"]["flops"]
    profile = Profile.load(out)
    assert profile.family == "sd15" and profile.size == 64
    unguided = {"unet": 50, "dec": 1}
    assert profile.equivalents(unguided, 50) == pytest.approx(1.0)
    assert profile.equivalents({**unguided, "tiny_dec_grad": 10}, 50) == pytest.approx(
        1 + 10 * 2 * hand / (50 * components["unet"]["flops"] + components["dec"]["flops"]))


def test_shipped_profiles_price_every_count():
    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "profiles"
    files = sorted(folder.glob("*.json"))
    assert {f.stem for f in files} >= {"sd15-512-idsim-dinov2-vitl14", "sd15-512-nearid", "sdxl-1024-idsim-dinov2-vitl14",
                                       "sdxl-1024-nearid"}
    for path in files:
        profile = Profile.load(path)
        assert all(profile.components[k]["flops"] > 0 for k in cost_profile.COMPONENTS), path.name
    sd15 = Profile.load(folder / "sd15-512-idsim-dinov2-vitl14.json")
    # the published ratios: a VAE decode forward+backward at 512 px ≈ 3.15 UNet CFG forwards, TAESD ≈ 0.18
    assert sd15.components["dec_grad"]["flops"] / (2 * sd15.components["unet"]["flops"]) == pytest.approx(3.15, abs=0.05)
    assert sd15.components["tiny_dec_grad"]["flops"] / (2 * sd15.components["unet"]["flops"]) == pytest.approx(0.18, abs=0.01)


def test_a_bad_profile_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"family": "sd15", "components": {"unet": {"flops": 1}}}))
    with pytest.raises(ValueError, match="no cost for dec, dec_grad"):
        Profile.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read it"):
        Profile.load(path)


def test_step_memory_counts_live_bytes_and_prices_the_guided_step():
    """The tracker counts what is alive (a freed tensor's bytes return), on fake tensors; at SD1.5's
    architecture (128 px to stay quick) guidance through TAESD keeps less than through the VAE, and the
    scorer's checkpointed blocks and half precision keep less again."""
    import step_memory
    from torch._subclasses.fake_tensor import FakeTensorMode

    def work():
        a = torch.empty(1024, 1024)  # 4 MiB
        b = torch.empty(512, 1024)  # 2 MiB, both alive: 6 MiB
        del a, b
        torch.empty(256, 1024)  # 1 MiB after the others are gone

    with FakeTensorMode():
        assert step_memory.transient(work) == 6 * 2**20
    rows = {name: step_memory.step_memory("sd15", 128, "float16", step_memory.Guided(*settings))
            for name, settings in {"vae": ("vae", 512, 4), "tiny": ("tiny", 512, 1),
                                   "lean": ("tiny", 512, 1, "idsim-dinov2-vitl14", "float16", True)}.items()}
    assert rows["vae"]["unguided"] == rows["tiny"]["unguided"] == rows["lean"]["unguided"]
    assert rows["vae"]["guidance_transient"] > rows["tiny"]["guidance_transient"] > rows["lean"]["guidance_transient"]
    assert rows["vae"]["guided"] > rows["tiny"]["guided"] > rows["lean"]["guided"] > rows["lean"]["unguided"]
    # the UNet's fp16 weights alone: 859.5 M parameters × 2 bytes
    assert rows["tiny"]["resident"] > 859e6 * 2
