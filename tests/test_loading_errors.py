"""Every way loading can fail gives an error naming the file, the key/shape and the source."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import idguide
from idguide import WeightsError

IDSIM = "idsim-dinov2-vitb14"
TYPE = "dinov2_vitb14_cls_patch"


@pytest.fixture()
def idsim_copy(weights_root, tmp_path):
    """A writable copy of one ID-Sim cache (backbone + variant folder)."""
    root = tmp_path / "id_sim_checkpoint"
    shutil.copytree(weights_root / "id_sim_checkpoint" / TYPE, root / TYPE)
    (root / "checkpoints").mkdir()
    shutil.copy(weights_root / "id_sim_checkpoint" / "checkpoints" / "dinov2_vitb14_pretrain.pth", root / "checkpoints")
    return root


@pytest.fixture()
def nearid_copy(weights_root, tmp_path):
    folder = tmp_path / "nearid"
    shutil.copytree(weights_root / "nearid-siglip2", folder)
    return folder


def test_offline_without_weights_names_files_and_source(monkeypatch):
    with pytest.raises(WeightsError) as error:
        idguide.load_scorer("nearid")
    text = str(error.value)
    assert "config.json" in text and "model.safetensors" in text
    assert "https://huggingface.co/Aleksandar/nearid-siglip2" in text
    assert "nearid-siglip2" in text  # where to put them locally


def test_offline_idsim_names_the_adapter_repo():
    with pytest.raises(WeightsError, match="chaenayo/id-sim_dinov2_vitl14_cls_patch") as error:
        idguide.load_scorer("idsim-dinov2-vitl14")
    assert "adapter_config.json" in str(error.value) and "mlp_patch.pth" in str(error.value)


def test_dinov3_gated_backbone_explains_manual_step(tmp_path, weights_root):
    root = tmp_path / "id_sim_checkpoint"
    shutil.copytree(weights_root / "id_sim_checkpoint" / "dinov3_vitl16_cls_patch", root / "dinov3_vitl16_cls_patch")
    with pytest.raises(WeightsError) as error:
        idguide.load_scorer("idsim", weights=root)
    text = str(error.value)
    assert "gated" in text and "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth" in text
    assert "checkpoints" in text and "ai.meta.com" in text


def test_search_path_is_used(weights_root, batch):
    idguide.add_search_path(weights_root)
    try:
        scorer = idguide.load_scorer("nearid")  # found under <root>/nearid-siglip2 without weights=
        assert scorer.embed(batch).vector.shape == (4, 64)
    finally:
        from idguide.scorers import weights

        weights._extra_roots.remove(weights_root)


def test_missing_path_and_missing_file(tmp_path, nearid_copy):
    with pytest.raises(WeightsError, match="weights path does not exist"):
        idguide.load_scorer("nearid", weights=tmp_path / "nowhere")
    (nearid_copy / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"is missing model\.safetensors.*huggingface\.co/Aleksandar/nearid-siglip2"):
        idguide.load_scorer("nearid", weights=nearid_copy)


def test_truncated_safetensors(nearid_copy):
    path = nearid_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"model\.safetensors as safetensors .*truncated or corrupt"):
        idguide.load_scorer("nearid", weights=nearid_copy)


def test_corrupt_json(nearid_copy):
    (nearid_copy / "config.json").write_text('{"vision_config": {')
    with pytest.raises(WeightsError, match=r"config\.json as JSON"):
        idguide.load_scorer("nearid", weights=nearid_copy)


def test_truncated_pth(idsim_copy):
    path = idsim_copy / "checkpoints" / "dinov2_vitb14_pretrain.pth"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"dinov2_vitb14_pretrain\.pth as a PyTorch state dict.*truncated"):
        idguide.load_scorer(IDSIM, weights=idsim_copy)


def test_pickled_code_is_refused(idsim_copy):
    """weights_only=True: a .pth holding an arbitrary object does not unpickle."""
    import argparse

    torch.save({"fc1.weight": torch.zeros(2, 2), "extra": argparse.Namespace(a=1)}, idsim_copy / TYPE / "mlp_cls.pth")
    with pytest.raises(WeightsError, match=r"mlp_cls\.pth as a PyTorch state dict"):
        idguide.load_scorer(IDSIM, weights=idsim_copy)


def test_wrong_key_names_the_key(nearid_copy):
    path = nearid_copy / "model.safetensors"
    state = load_file(str(path))
    key = "backbone.vision_model.post_layernorm.weight"
    state["backbone.vision_model.post_layernorm.scale"] = state.pop(key)
    save_file(state, str(path))
    with pytest.raises(WeightsError, match=r"missing keys \['post_layernorm.weight'\]"):
        idguide.load_scorer("nearid", weights=nearid_copy)


def test_wrong_shape_names_key_and_shapes(idsim_copy):
    state = torch.load(idsim_copy / TYPE / "mlp_patch.pth", weights_only=True)
    state["fc2.bias"] = torch.zeros(7)
    torch.save(state, idsim_copy / TYPE / "mlp_patch.pth")
    with pytest.raises(WeightsError, match=r"mlp_patch\.pth.*'fc2.bias' has shape \(7,\), expected \(64,\)"):
        idguide.load_scorer(IDSIM, weights=idsim_copy)


def test_heads_of_another_variant(idsim_copy, weights_root):
    """ViT-L heads (width 128 here) with a ViT-B backbone (64)."""
    shutil.copy(weights_root / "id_sim_checkpoint" / "dinov2_vitl14_cls_patch" / "mlp_cls.pth", idsim_copy / TYPE)
    with pytest.raises(WeightsError, match="another variant"):
        idguide.load_scorer(IDSIM, weights=idsim_copy)


def test_backbone_of_another_family(idsim_copy, weights_root):
    dinov3 = weights_root / "id_sim_checkpoint" / "checkpoints" / "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth"
    shutil.copy(dinov3, idsim_copy / "checkpoints" / "dinov2_vitb14_pretrain.pth")
    with pytest.raises(WeightsError, match="is a DINOv3 ViT with patch 16, but idsim-dinov2-vitb14 needs DINOv2"):
        idguide.load_scorer(IDSIM, weights=idsim_copy)


def test_lora_that_fits_nothing(idsim_copy):
    path = idsim_copy / TYPE / "adapter_model.safetensors"
    state = {k.replace("attn.qkv", "attn.nothere"): v for k, v in load_file(str(path)).items()}
    save_file(state, str(path))
    with pytest.raises(WeightsError, match="LoRA module '.*attn.nothere' matches no backbone weight"):
        idguide.load_scorer(IDSIM, weights=idsim_copy)


def test_lora_config_without_alpha(idsim_copy):
    path = idsim_copy / TYPE / "adapter_config.json"
    config = json.loads(path.read_text())
    del config["lora_alpha"]
    path.write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="lora_alpha"):
        idguide.load_scorer(IDSIM, weights=idsim_copy)


def test_wrong_scorer_folder(weights_root):
    """A CLIP folder given to NearID: its config.json already says what it is."""
    with pytest.raises(WeightsError, match="clip-vit-large-patch14 holds 'clip' weights .*not Aleksandar/nearid-siglip2's"):
        idguide.load_scorer("nearid", weights=weights_root / "clip-vit-large-patch14")


def test_hub_probe_is_asked_again_after_a_while_and_goes_through_the_proxy(monkeypatch):
    """A failed probe is not remembered for the whole process (a blip at start-up must not block
    downloads until a restart), and with HTTPS_PROXY set the proxy is what must answer."""
    import socket

    from huggingface_hub import constants

    from idguide.scorers import weights

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weights, "_probe", None)
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    clock, dialled, up = [1000.0], [], [False]
    monkeypatch.setattr(weights.time, "monotonic", lambda: clock[0])

    class Connection:
        def close(self):
            pass

    def connect(address, timeout):
        dialled.append(address)
        if not up[0]:
            raise OSError(101, "Network is unreachable")
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert "unreachable" in weights.hub_reachable()
    up[0] = True
    assert "unreachable" in weights.hub_reachable() and len(dialled) == 1  # remembered for a while
    clock[0] += weights.PROBE_SECONDS + 1
    assert weights.hub_reachable() is None and len(dialled) == 2  # asked again: the network is back
    assert dialled[-1][1] == 443
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    clock[0] += weights.PROBE_SECONDS + 1
    assert weights.hub_reachable() is None and dialled[-1] == ("proxy.example", 3128)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert weights.hub_reachable() == "HF_HUB_OFFLINE is set"
