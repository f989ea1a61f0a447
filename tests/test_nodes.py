"""The ComfyUI nodes' logic, called directly in-process with ComfyUI's real modules.

Needs a ComfyUI checkout ($IDGUIDE_COMFYUI) and a Python with its requirements (run this file
with that Python, as README.md shows); skipped otherwise.
"""

import sys

import pytest
import torch

import idguide
from comfyui_server import comfyui_checkout
from conftest import scorer_for


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, weights_root):
    checkout = comfyui_checkout()
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        import comfy.cli_args
    except ImportError as error:
        pytest.skip(f"this Python lacks ComfyUI's requirements ({error}); run it with IDGUIDE_COMFYUI_PYTHON")
    comfy.cli_args.args.cpu = True
    import comfy.model_management as mm
    import folder_paths

    folder_paths.add_model_folder_path("idguide", str(weights_root), is_default=True)
    from idguide import nodes

    return nodes, mm


def run(node, **inputs):
    return node.execute(**inputs).result


@pytest.fixture(scope="module")
def nearid(comfy):
    nodes, _ = comfy
    return run(nodes.LoadIdentityScorer, scorer="nearid", weights="nearid-siglip2", mode="cls", precision="fp32")[0]


def test_scorer_is_placed_by_comfyui_model_management(comfy, nearid):
    nodes, mm = comfy
    mm.unload_all_models()
    assert nearid.patcher not in mm.loaded_models()
    scorer = nearid.load()
    assert nearid.patcher in mm.loaded_models()  # ComfyUI now tracks (and can free) it
    assert scorer.device == mm.get_torch_device()
    mm.unload_all_models()
    assert nearid.patcher not in mm.loaded_models()


def test_unloading_models_frees_the_scorer(comfy, batch):
    """What "unload models" + "free memory" does (main.py: unload_all_models, then the executor's
    output cache is reset, then gc): nothing of ours may keep the weights alive."""
    import gc
    import weakref

    nodes, mm = comfy
    handle = run(nodes.LoadIdentityScorer, scorer="nearid", weights="nearid-siglip2", mode="cls", precision="fp32")[0]
    reference = run(nodes.IdentityReferenceNode, scorer=handle, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]
    run(nodes.IdentityScore, reference=reference, images=batch.movedim(1, -1))
    assert handle.patcher in mm.loaded_models()
    weights = weakref.ref(next(handle.scorer.parameters()))
    mm.unload_all_models()
    del handle, reference  # the executor's cache reset drops the node outputs
    gc.collect()
    assert weights() is None, "scorer weights still referenced after unload + cache reset"


def test_registered_scorers_are_in_the_dropdown_and_load(comfy, monkeypatch):
    nodes, _ = comfy
    from idguide_proving.models import load_judge
    from idguide.scorers import registry

    registry.read_entry_points()
    monkeypatch.setattr(registry, "SCORERS", dict(registry.SCORERS))
    import idguide

    idguide.register_scorer("my-judge", load_judge, "a user's own scorer")
    options = next(i for i in nodes.LoadIdentityScorer.define_schema().inputs if i.id == "scorer").options
    assert {"proving-guide", "proving-judge", "my-judge"} <= set(options)
    handle = run(nodes.LoadIdentityScorer, scorer="my-judge", weights="official (download or cache)", mode="cls",
                 precision="fp32")[0]
    assert handle.load().name == "proving-judge"


def test_bad_weights_and_paths_are_refused(comfy):
    nodes, _ = comfy
    with pytest.raises(idguide.WeightsError, match="weights 'nearid-siglip2' do not load as clip-i"):
        run(nodes.LoadIdentityScorer, scorer="clip-i", weights="nearid-siglip2", mode="cls", precision="fp32")
    with pytest.raises(ValueError, match="must be a name inside models/idguide"):
        run(nodes.LoadIdentityScorer, scorer="nearid", weights="../nearid-siglip2", mode="cls", precision="fp32")
    with pytest.raises(ValueError, match="mode 'patch' is an ID-Sim option and has no effect on nearid: set mode to cls"):
        run(nodes.LoadIdentityScorer, scorer="nearid", weights="nearid-siglip2", mode="patch", precision="fp32")


def test_score_equals_the_library_and_labels_every_image(comfy, nearid, batch, weights_root):
    nodes, _ = comfy
    images = batch.movedim(1, -1)
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=images[:1], reference_mode="mean")[0]
    scores, text, labelled = run(nodes.IdentityScore, reference=reference, images=images)
    expected = 100 * scorer_for("nearid", weights_root).score(batch[:1], batch)
    assert scores == pytest.approx(expected.tolist(), abs=1e-3)
    assert scores[0] == pytest.approx(100.0, abs=1e-3) and len(text.splitlines()) == 5
    assert labelled.shape == images.shape and not torch.equal(labelled, images)
    assert torch.allclose(labelled[:, 48:], images[:, 48:], atol=1 / 255)  # the label sits in the corner
    with pytest.raises(ValueError, match="'images' must be a non-empty IMAGE batch"):
        run(nodes.IdentityScore, reference=reference, images=images[:0])


def test_masks_must_match_the_references(comfy, nearid, batch):
    nodes, _ = comfy
    images = batch.movedim(1, -1)
    with pytest.raises(ValueError, match="^mask .* differ in size"):
        run(nodes.IdentityReferenceNode, scorer=nearid, images=images, reference_mode="mean", mask=torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="^3 masks for 4 images"):
        run(nodes.IdentityReferenceNode, scorer=nearid, images=images, reference_mode="mean",
            mask=torch.ones(3, 96, 128))


def test_rank_keeps_top_k_best_first_and_fails_clearly_when_nothing_passes(comfy, nearid, batch):
    nodes, _ = comfy
    images = batch.movedim(1, -1)
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=images[:1], reference_mode="mean")[0]
    kept, scores, indices, rejected, _ = run(nodes.IdentityRank, reference=reference, images=images, top_k=2,
                                             threshold=0.0, if_none_pass="keep_best")
    all_scores = run(nodes.IdentityScore, reference=reference, images=images)[0]
    assert indices == sorted(range(4), key=lambda i: -all_scores[i])[:2] and indices[0] == 0
    assert torch.equal(kept, images[indices]) and rejected.shape[0] == 2
    with pytest.raises(ValueError, match="^no image reached the threshold 100.5"):
        run(nodes.IdentityRank, reference=reference, images=images, top_k=0, threshold=100.5, if_none_pass="error")


def test_similarity_map_of_the_reference_itself_is_all_matched(comfy, nearid, batch):
    nodes, _ = comfy
    images = batch.movedim(1, -1)
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=images[:1], reference_mode="mean")[0]
    overlay, heat, means = run(nodes.IdentitySimilarityMap, reference=reference, images=images,
                               value_range="absolute", alpha=0.5)
    assert overlay.shape == images.shape and heat.shape == images.shape
    assert means[0] == pytest.approx(100.0, abs=0.05) and all(m < 99.9 for m in means[1:])
    assert overlay.min() >= 0 and overlay.max() <= 1


def test_similarity_matrix_is_symmetric_and_lists_duplicates(comfy, nearid, batch):
    nodes, _ = comfy
    images = torch.cat([batch, batch[1:2]]).movedim(1, -1)  # image 4 duplicates image 1
    plot, text, values = run(nodes.IdentitySimilarityMatrix, scorer=nearid, images_a=images, duplicate_threshold=99.9)
    matrix = torch.tensor(values).reshape(5, 5)
    assert torch.allclose(matrix, matrix.T, atol=1e-3) and torch.allclose(matrix.diagonal(), torch.tensor(100.0))
    assert "likely duplicates (score >= 99.9): 1" in text and "a1 ~ a4" in text
    assert plot.dim() == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3
    _, _, values = run(nodes.IdentitySimilarityMatrix, scorer=nearid, images_a=images[:2], images_b=images,
                       duplicate_threshold=95.0)
    assert torch.allclose(torch.tensor(values).reshape(2, 5), matrix[:2], atol=1e-3)


def test_nodes_default_to_the_library_settings(comfy):
    """One meaning per setting: a workflow and a script with the defaults run the same steering."""
    import inspect

    from idguide.guidance.diffusers.callback import IdentityGuidanceCallback
    from idguide.guidance.diffusers.particles import ParticleSteering

    nodes, _ = comfy

    def node_defaults(node) -> dict:
        schema = {i.id: i.default for i in node.define_schema().inputs if getattr(i, "default", None) is not None}
        for name, parameter in inspect.signature(node.execute).parameters.items():  # optional inputs' fallbacks
            if parameter.default is not inspect.Parameter.empty:
                assert parameter.default == schema[name], (node.__name__, name)
        return schema

    def library_defaults(*functions) -> dict:
        found = {}
        for function in functions:
            for name, parameter in inspect.signature(function).parameters.items():
                if name == "augment":  # the node's 0 views is the library's None (one plain view)
                    found[name] = 0 if parameter.default is None else parameter.default.draws
                elif parameter.default is not inspect.Parameter.empty and parameter.default is not None:
                    found[name] = parameter.default
        return found

    pairs = [(nodes.IdentityGuidance, (IdentityGuidanceCallback,),
              {"scale", "start", "end", "every", "inner_steps", "decode_size", "augment", "recurrence", "decoder"}),
             (nodes.IdentityParticleSampler, (ParticleSteering,),
              {"every", "start", "end", "temperature", "potential", "decode_size", "seed", "renew", "decoder"}),
             (nodes.IdentityNoiseSearch, (idguide.noise_search, idguide.path_search),
              {"budget", "neighbours", "mix", "strength", "parents", "seed"})]
    for node, functions, expected in pairs:
        ours, library = node_defaults(node), library_defaults(*functions)
        assert ours.keys() & library.keys() == expected, node.__name__
        assert {k: ours[k] for k in expected} == {k: library[k] for k in expected}, node.__name__


def test_guidance_patch_is_the_model_itself_at_scale_zero(comfy, nearid, batch):
    nodes, _ = comfy
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]
    model = object()
    assert run(nodes.IdentityGuidance, model=model, vae=None, reference=reference, scale=0.0, start=0.0,
               end=0.5, every=1, inner_steps=1, decode_size=512)[0] is model
    with pytest.raises(ValueError, match="start 0.6 is after end 0.5"):
        run(nodes.IdentityGuidance, model=model, vae=None, reference=reference, scale=1.0, start=0.6,
            end=0.5, every=1, inner_steps=1, decode_size=512)


# --- the guidance patch in ComfyUI's own model classes and samplers -------------------------------------
# Tiny SD1.5 / SDXL / SD3 / Flux diffusion models built from ComfyUI's model configs (its model classes,
# model_sampling and latent formats; random weights at reduced size), a real-size random VAE decoder,
# conditioning tensors of the shapes each model's text encoders give.

UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
            transformer_depth=[1, 1], transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1], num_heads=2,
            use_spatial_transformer=True, legacy=False, use_temporal_attention=False, use_temporal_resblock=False)
MODELS = {
    "SD15": (dict(UNET, context_dim=64, adm_in_channels=None, use_linear_in_transformer=False), 4, {}),
    "SDXL": (dict(UNET, model_channels=64, context_dim=64, adm_in_channels=2816, num_classes="sequential", use_linear_in_transformer=True), 4,
             {"pooled_output": (1, 1280)}),
    "SD3": ({"in_channels": 16, "patch_size": 2, "depth": 2, "adm_in_channels": 32, "pos_embed_max_size": 16,
             "num_patches": 256, "pos_embed_scaling_factor": None, "pos_embed_offset": None,
             "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 64, "out_features": 128}}},
            16, {"pooled_output": (1, 32)}),
    "Flux": ({"image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2, "vec_in_dim": 32,
              "context_in_dim": 64, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1,
              "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "qkv_bias": True, "guidance_embed": True},
             16, {"pooled_output": (1, 32), "guidance": 3.5}),
}


def tiny_model(name):
    import comfy.model_patcher
    import comfy.supported_models

    unet_config, channels, extra = MODELS[name]
    config = getattr(comfy.supported_models, name)(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, p in model.diffusion_model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.02 + (1.0 if "norm" in key and p.dim() == 1 else 0))
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    cond = {k: (torch.randn(v, generator=generator) if isinstance(v, tuple) else v) for k, v in extra.items()}
    positive = [[torch.randn(1, 8, 64, generator=generator), cond]]
    negative = [[torch.zeros(1, 8, 64), dict(cond)]]
    return patcher, channels, positive, negative


@pytest.fixture(scope="module")
def vaes(comfy):
    import comfy.ldm.models.autoencoder as autoencoder
    import comfy.sd

    out = {}
    for channels in (4, 16):
        torch.manual_seed(channels)
        ddconfig = {"double_z": True, "z_channels": channels, "resolution": 256, "in_channels": 3, "out_ch": 3,
                    "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
        model = autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=channels)
        state = {k: torch.randn(v.shape) * (0.02 if v.dim() > 1 else 0.01) + (1.0 if "norm" in k and k.endswith("weight") else 0)
                 for k, v in model.state_dict().items()}
        out[channels] = comfy.sd.VAE(sd=state)
    return out


def sample(patcher, channels, positive, negative, how, seed=0):
    """One 64x64 image through the entry point each stock sampler node uses."""
    import comfy.sample
    import comfy.samplers

    latent = torch.zeros(1, channels, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    if how == "KSampler":
        return comfy.sample.sample(patcher, noise, 4, 2.0, "euler", "normal", positive, negative, latent, seed=seed,
                                   disable_pbar=True)
    if how == "KSamplerAdvanced":  # a window of the schedule, as KSamplerAdvanced passes it
        return comfy.sample.sample(patcher, noise, 6, 2.0, "euler", "normal", positive, negative, latent,
                                   start_step=0, last_step=4, force_full_denoise=True, seed=seed, disable_pbar=True)
    guider = comfy.samplers.CFGGuider(patcher)  # SamplerCustom / SamplerCustomAdvanced
    guider.set_conds(positive, negative)
    guider.set_cfg(2.0)
    sigmas = comfy.samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "normal", 4)
    return guider.sample(noise, latent, comfy.samplers.sampler_object("euler"), sigmas, seed=seed, disable_pbar=True)


@pytest.mark.parametrize("name,how", [("SD15", "KSampler"), ("SD15", "KSamplerAdvanced"), ("SD15", "SamplerCustomAdvanced"),
                                      ("SDXL", "KSampler"), ("SD3", "SamplerCustomAdvanced"), ("Flux", "KSampler")])
def test_guidance_patch_moves_each_model_type_with_each_sampler(comfy, nearid, vaes, batch, name, how):
    nodes, _ = comfy
    patcher, channels, positive, negative = tiny_model(name)
    vae = vaes[channels]
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]

    def guided(scale):
        return run(nodes.IdentityGuidance, model=patcher, vae=vae, reference=reference, scale=scale, start=0.0,
                   end=1.0, every=1, inner_steps=1, decode_size=512)[0]

    with torch.inference_mode():  # as ComfyUI executes nodes
        plain = sample(patcher, channels, positive, negative, how)
        off = sample(guided(0.0), channels, positive, negative, how)
        on = sample(guided(2.0), channels, positive, negative, how)
    assert torch.equal(off, plain)
    assert torch.isfinite(on).all() and (on - plain).abs().mean() > 1e-3 * plain.abs().mean()
    # Guidance pulls toward the reference: the decoded sample scores higher than the unguided one.
    with torch.inference_mode():
        images = vae.decode(torch.cat([plain, on]))
    scores = run(nodes.IdentityScore, reference=reference, images=images)[0]
    assert scores[1] > scores[0], scores


# --- DreamBench++ evaluation nodes ---------------------------------------------------------------------

def test_dreambench_nodes_score_resume_and_align(comfy, nearid, tmp_path, monkeypatch, weights_root):
    import json

    import folder_paths
    import numpy as np
    from PIL import Image

    nodes, _ = comfy
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path / "input"))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    rng = np.random.default_rng(0)
    keys = []
    for s, subject in enumerate(["object_00_cube", "live_subject_animal_00_cat"]):
        base = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        (tmp_path / "input" / "db" / "references").mkdir(parents=True, exist_ok=True)
        Image.fromarray(base).save(tmp_path / "input" / "db" / "references" / f"{subject}.png")
        for i in range(4):
            (tmp_path / "input" / "db" / "samples" / "emu2" / subject).mkdir(parents=True, exist_ok=True)
            noisy = np.clip(base + rng.normal(0, 30 * i, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(tmp_path / "input" / "db" / "samples" / "emu2" / subject / f"{i}.png")
            keys.append(f"{subject}-{i}")
    for group in ("group1", "group2"):  # human ratings: closer to the reference = higher
        (tmp_path / "input" / "human" / group).mkdir(parents=True)
        for method in ("emu2", "dreambooth_sd"):
            ratings = {k: 4 - int(k[-1]) if group == "group1" or k[-1] != "2" else 1 for k in keys}
            (tmp_path / "input" / "human" / group / f"{method}-cp.json").write_text(json.dumps(ratings))

    dataset, summary = run(nodes.LoadDreamBenchFolder, folder="db", method="emu2")
    assert summary == "emu2: 8 samples of 2 subjects"
    with pytest.raises(ValueError, match="^'folder' '../x' is outside"):
        run(nodes.LoadDreamBenchFolder, folder="../x", method="emu2")

    # A cancel after the first batch keeps what was scored; the rerun resumes and completes.
    import comfy.model_management as mm

    calls = {"n": 0}

    def cancel_on_third():
        calls["n"] += 1
        if calls["n"] == 3:
            raise mm.InterruptProcessingException()

    monkeypatch.setattr(mm, "throw_exception_if_processing_interrupted", cancel_on_third)
    with pytest.raises(mm.InterruptProcessingException):
        run(nodes.DreamBenchScore, scorer=nearid, dataset=dataset, name="tiny")
    partial = tmp_path / "output" / "idguide_ratings" / "tiny" / "emu2.partial-0.jsonl"
    lines = partial.read_text().splitlines()
    assert json.loads(lines[0])["provenance"]["scorer"] == "nearid" and len(lines) == 1 + 2
    monkeypatch.setattr(mm, "throw_exception_if_processing_interrupted", lambda: None)
    ratings, summary = run(nodes.DreamBenchScore, scorer=nearid, dataset=dataset, name="tiny")
    assert ratings == "idguide_ratings/tiny" and "8 images" in summary and not partial.exists()
    scores = json.loads((tmp_path / "output" / ratings / "emu2.json").read_text())
    assert sorted(scores) == sorted(keys) and scores["object_00_cube-0"] == pytest.approx(100.0, abs=1e-3)
    other = run(nodes.LoadIdentityScorer, scorer="siglip2", weights="siglip2-so400m-patch14-384", mode="cls",
                precision="fp32")[0]
    with pytest.raises(ValueError, match="scored with other settings .*scorer: 'nearid' there, 'siglip2' now"):
        run(nodes.DreamBenchScore, scorer=other, dataset=dataset, name="tiny")

    table, plot = run(nodes.HumanAlignment, human_ratings="human", ratings=ratings, category="all")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["metric", "Emu2"] and "(1 of 2 rated methods have rating files: emu2)" in table
    from scipy.stats import pearsonr

    g1 = json.loads((tmp_path / "input" / "human" / "group1" / "emu2-cp.json").read_text())
    g2 = json.loads((tmp_path / "input" / "human" / "group2" / "emu2-cp.json").read_text())
    ordered = sorted(keys)
    r = (round(pearsonr([scores[k] for k in ordered], [g1[k] for k in ordered])[0], 4) +
         round(pearsonr([scores[k] for k in ordered], [g2[k] for k in ordered])[0], 4)) / 2
    tiny = next(line for line in lines if line.startswith("tiny"))
    assert float(tiny.split()[1]) == pytest.approx(r, abs=1e-4)
    assert plot.shape[0] == 1 and plot.shape[-1] == 3


# Names typed into the DreamBench nodes that would leave their folder, name a folder, or break elsewhere.
BAD_NAMES = ["../evil", "../../evil", "sub/evil", "{tmp}/abs/evil", "..", ".", "a\\evil", "x:y", "", " x"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_dreambench_node_names_cannot_leave_their_folders(comfy, nearid, tmp_path, monkeypatch, name):
    """The folder's method (it names the rating file), the score node's name (its ratings folder)
    and the alignment node's folders: each refused by name, nothing written anywhere."""
    import folder_paths
    from PIL import Image

    from idguide.scorers.errors import ParameterError

    nodes, _ = comfy
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path / "input"))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    for method in ("m", "sub/evil"):  # a nested samples folder exists too: only the name stops it
        (tmp_path / "input" / "db" / "samples" / method / "object_00_cube").mkdir(parents=True)
        Image.new("RGB", (32, 32), (200, 30, 30)).save(
            tmp_path / "input" / "db" / "samples" / method / "object_00_cube" / "0.png")
    (tmp_path / "input" / "db" / "references").mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "input" / "db" / "references" / "object_00_cube.png")
    (tmp_path / "output").mkdir()
    bad = name.format(tmp=tmp_path)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=r"^(method: .*(cannot be a file name|non-empty name)|'method' .* is outside)"):
        run(nodes.LoadDreamBenchFolder, folder="db", method=bad)
    dataset, _ = run(nodes.LoadDreamBenchFolder, folder="db", method="m")
    with pytest.raises(ParameterError, match=r"^name: .*(cannot be a file name|non-empty name)"):
        run(nodes.DreamBenchScore, scorer=nearid, dataset=dataset, name=bad)
    assert set(tmp_path.rglob("*")) == before
    if bad.startswith(("..", str(tmp_path))):  # the alignment node only reads, but only inside its folders too
        for inputs in (dict(human_ratings=bad, ratings="idguide_ratings/nearid"), dict(human_ratings="human", ratings=bad)):
            with pytest.raises(ValueError, match=r"^'(human_ratings|ratings)' .* is outside"):
                run(nodes.HumanAlignment, category="all", **inputs)


@pytest.mark.parametrize("recurrence", [0, 2])
def test_comfyui_and_diffusers_change_the_clean_estimate_the_same_way(comfy, nearid, vaes, batch, monkeypatch,
                                                                      recurrence):
    """One rule: the same settings on the same model give the same per-step change of x̂0 in the
    ComfyUI patch (KSampler, euler) and in the diffusers callback (EulerDiscreteScheduler) — with
    self-recurrence too (the same re-noised samples, the model re-run by each front-end)."""
    nodes, _ = comfy
    import types

    import comfy.sample
    import comfy.samplers
    from diffusers import EulerDiscreteScheduler

    import idguide.guidance.step as both_sides
    import idguide.nodes.decoders as comfy_decoders
    from idguide import IdentityGuidanceCallback

    patcher, channels, positive, negative = tiny_model("SD15")
    vae = vaes[channels]
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]
    eps = lambda x_in: 0.3 * x_in + 0.05  # noqa: E731 - the shared model: noise predicted from the scaled input

    def denoiser(apply_model, args):  # ComfyUI's wrapper stands in for apply_model: raw x and σ → x̂0
        x, sigma = args["input"], args["timestep"].view(-1, 1, 1, 1)
        return x - sigma * eps(x / (sigma**2 + 1).sqrt())

    model = patcher.clone()
    model.set_model_unet_function_wrapper(denoiser)
    settings = dict(scale=2.0, start=0.25, end=0.75, every=1, inner_steps=1, recurrence=recurrence)
    changes = {"comfyui": [], "diffusers": []}

    from idguide.guidance.step import guided_denoised as real

    def recording(side):
        def record(denoised, decode, loss, weight, s, seed):
            out = real(denoised, decode, loss, weight, s, seed)
            changes[side].append((out - denoised).float())
            return out
        return record

    steps = 8
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", steps)
    noise = torch.randn(1, channels, 8, 8, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(both_sides, "guided_denoised", recording("comfyui"))  # what guided_step calls
    with torch.inference_mode():
        patched = run(nodes.IdentityGuidance, model=model, vae=vae, reference=reference, decode_size=512, **settings)[0]
        comfy.sample.sample(patched, noise, steps, 1.0, "euler", "normal", positive, negative,
                            torch.zeros_like(noise), seed=3, disable_pbar=True)

    monkeypatch.setattr(both_sides, "guided_denoised", recording("diffusers"))
    decoder = comfy_decoders.decoder_for(vae, 512)
    callback = IdentityGuidanceCallback(reference.handle.load(), reference.reference, decoder=lambda x: decoder(
        patcher.model.process_latent_out(x)), decode_size=None, **settings)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    scheduler.set_timesteps(sigmas=sigmas.tolist())

    class Unet(torch.nn.Module):
        def forward(self, sample, timestep):
            return eps(sample)

    pipeline = types.SimpleNamespace(scheduler=scheduler, num_timesteps=steps, unet=Unet(), guidance_scale=1.0)
    x = noise * (1 + sigmas[0] ** 2).sqrt()  # ComfyUI's noise scaling for an EPS model at full denoise
    for i, t in enumerate(scheduler.timesteps):
        out = pipeline.unet(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x).prev_sample
        callback.callback_fn(pipeline, i, t, {"latents": x})

    # steps 2..5 of 8 (start <= i/8 < end), each guided 1 + recurrence times
    assert len(changes["comfyui"]) == len(changes["diffusers"]) == 4 * (1 + recurrence)
    for ours, theirs in zip(changes["comfyui"], changes["diffusers"]):
        assert ours.abs().mean() > 1e-4
        # float32 rounding of two model-calling paths, grown through re-noising: within 0.1 % of the change
        torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-3, atol=1e-3 * float(ours.abs().max()))
    gap = max(float((a - b.to(a.dtype)).abs().max()) for a, b in zip(changes["comfyui"], changes["diffusers"]))
    size = sum(float(a.abs().mean()) for a in changes["comfyui"]) / len(changes["comfyui"])
    print(f"\n[parity, recurrence {recurrence}] {len(changes['comfyui'])} guided changes of x̂0, mean |change| "
          f"{size:.4f}, largest ComfyUI-diffusers difference {gap:.2e}")


@pytest.mark.parametrize("sampler,denoise,masked", [("euler_ancestral", 1.0, False), ("dpmpp_2m_sde", 1.0, False),
                                                    ("euler", 0.6, False), ("euler", 1.0, True)])
def test_best_of_n_images_are_what_a_ksampler_gives_with_their_seed(comfy, nearid, vaes, batch, sampler, denoise, masked):
    """Every sampler (ancestral and SDE ones draw noise per step from the seed), img2img and inpainting."""
    nodes, _ = comfy
    import comfy.sample

    patcher, channels, positive, negative = tiny_model("SD15")
    vae = vaes[channels]
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]
    latent = {"samples": torch.randn(1, channels, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5}
    if masked:
        latent["noise_mask"] = torch.zeros(1, 1, 8, 8)
        latent["noise_mask"][..., 2:6, 2:6] = 1.0
    settings = dict(steps=3, cfg=2.0, sampler_name=sampler, scheduler="normal")
    with torch.inference_mode():
        images, scores, seeds, _ = run(nodes.IdentityBestOfN, model=patcher, positive=positive, negative=negative,
                                       latent_image=latent, vae=vae, reference=reference, seed=40, n=3, batch_size=3,
                                       keep=3, threshold=0.0, denoise=denoise, **settings)
        assert sorted(seeds) == [40, 41, 42] and scores == sorted(scores, reverse=True)
        for image, seed in zip(images, seeds):
            alone = comfy.sample.sample(patcher, comfy.sample.prepare_noise(latent["samples"], seed), 3, 2.0, sampler,
                                        "normal", positive, negative, latent["samples"], denoise=denoise,
                                        noise_mask=latent.get("noise_mask"), seed=seed, disable_pbar=True)
            torch.testing.assert_close(image, vae.decode(alone)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["zero-order", "paths"])
def test_noise_search_spends_its_budget_on_ksampler_paths(comfy, nearid, vaes, batch, method):
    """zero-order: the first round is best-of-N's first samples; paths: every branch is a KSampler
    img2img of one of the best samples so far at the same step spacing (so it costs half a sample)."""
    nodes, _ = comfy
    import comfy.sample

    patcher, channels, positive, negative = tiny_model("SD15")
    vae = vaes[channels]
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]
    latent = {"samples": torch.zeros(1, channels, 8, 8)}
    settings = dict(steps=4, cfg=2.0, sampler_name="euler_ancestral", scheduler="normal")
    common = dict(model=patcher, positive=positive, negative=negative, latent_image=latent, vae=vae,
                  reference=reference, seed=7, threshold=0.0, **settings)
    from idguide.scorers.checks import NoEffectWarning

    unused = "neighbours 2 has no effect with method 'paths'" if method == "paths" else \
        "parents 1 has no effect with method 'zero-order'"
    with torch.inference_mode(), pytest.warns(NoEffectWarning, match=unused):
        images, scores, text = run(nodes.IdentityNoiseSearch, method=method, budget=4, keep=64, neighbours=2,
                                   parents=1, strength=0.5, **common)
        best2 = run(nodes.IdentityBestOfN, n=2, batch_size=2, keep=2, **common)
        if method == "paths":
            # 2 random starts (half the budget), then 4 branches of strength 0.5 = 2 more samples' worth.
            assert len(scores) == 6 and text.count("branch of") == 4
        else:
            assert len(scores) == 4 and text.count("near the best noise") == 2
        assert scores == sorted(scores, reverse=True)
        # Both start from what a KSampler gives with seeds 7 and 8 (best-of-N's samples).
        for score in best2[1]:
            assert any(abs(score - s) < 1e-4 for s in scores)
        if method == "paths":
            # The first branch (index 2, seed 9) re-noises the best start to half of the schedule.
            start = max(range(2), key=lambda i: best2[1][best2[2].index(7 + i)])
            first = comfy.sample.sample(patcher, comfy.sample.prepare_noise(latent["samples"], 7 + start), 4, 2.0,
                                        "euler_ancestral", "normal", positive, negative, latent["samples"],
                                        seed=7 + start, disable_pbar=True)
            branch = comfy.sample.sample(patcher, comfy.sample.prepare_noise(first, 9), 2, 2.0, "euler_ancestral",
                                         "normal", positive, negative, first, denoise=0.5, seed=9, disable_pbar=True)
            branch_image = vae.decode(branch)[0]
            assert any(torch.allclose(image, branch_image, atol=1e-5) for image in images)
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        run(nodes.IdentityNoiseSearch, method=method, budget=0, keep=1, **common)


def test_particle_sampler_resamples_toward_the_best_particle(comfy, nearid, vaes, batch):
    """No resampling step: exactly the wrapped sampler. A resampling with a huge temperature on a
    deterministic sampler: every particle continues from the best one — all equal with renew 0,
    the copies parting ways with renewed noise (the first continues exactly)."""
    nodes, _ = comfy
    import comfy.samplers

    patcher, channels, positive, negative = tiny_model("SD15")
    vae = vaes[channels]
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]
    latent = torch.zeros(3, channels, 8, 8)
    noise = torch.randn(3, channels, 8, 8, generator=torch.Generator().manual_seed(3))
    sigmas = comfy.samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "normal", 4)
    guider = comfy.samplers.CFGGuider(patcher)
    guider.set_conds(positive, negative)
    guider.set_cfg(2.0)
    base = comfy.samplers.sampler_object("euler")
    options = dict(vae=vae, reference=reference, start=0.0, end=1.0, potential="value", decode_size=64, seed=0)

    def sample(sampler):
        return guider.sample(noise.clone(), latent, sampler, sigmas, seed=5, disable_pbar=True)

    plain = sample(base)
    unsteered = run(nodes.IdentityParticleSampler, sampler=base, every=8, temperature=20.0, **options)[0]
    torch.testing.assert_close(sample(unsteered), plain, rtol=0, atol=0)
    assert unsteered.sampler_function.resamplings == 0
    steered = run(nodes.IdentityParticleSampler, sampler=base, every=2, temperature=1e4, renew=0.0, **options)[0]
    out = sample(steered)
    assert steered.sampler_function.resamplings == 1
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    renewed = sample(run(nodes.IdentityParticleSampler, sampler=base, every=2, temperature=1e4, **options)[0])
    torch.testing.assert_close(renewed[0], out[0])
    assert not torch.allclose(renewed[1], out[1]) and not torch.allclose(renewed[1], renewed[2])
    assert not torch.equal(plain[0], plain[1])
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        run(nodes.IdentityParticleSampler, sampler=base, every=0, temperature=1.0, **options)
    with pytest.raises(TypeError, match="wraps a k-diffusion sampler"):
        run(nodes.IdentityParticleSampler, sampler=object(), every=2, temperature=1.0, **options)


def test_guidance_and_particles_decode_through_the_taesd_file_of_comfyuis_previews(comfy, nearid, vaes, batch,
                                                                                   tmp_path, monkeypatch):
    """decoder 'taesd': the vae_approx file of the model's latent format (a random TAESD decoder in
    its published layout here), reading the sampler's latents; absent, a one-line error naming the
    file and the folder; 'auto' uses it when present and the VAE otherwise."""
    nodes, _ = comfy
    import comfy.samplers
    import comfy.taesd.taesd
    import folder_paths
    from safetensors.torch import save_file

    import idguide.nodes.decoders as comfy_side

    folder = tmp_path / "vae_approx"
    folder.mkdir()
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "vae_approx",
                        ([str(folder)], folder_paths.folder_names_and_paths["vae_approx"][1]))
    monkeypatch.delitem(folder_paths.filename_list_cache, "vae_approx", raising=False)
    patcher, channels, positive, negative = tiny_model("SD15")
    vae = vaes[channels]
    latent_format = patcher.get_model_object("latent_format")
    reference = run(nodes.IdentityReferenceNode, scorer=nearid, images=batch[:1].movedim(1, -1), reference_mode="mean")[0]
    assert isinstance(comfy_side.decoder_for(vae, 512, "auto", latent_format), comfy_side.ComfyVaeDecoder)
    generator = torch.Generator().manual_seed(0)  # ComfyUI's layers skip their init: draw the weights here
    state = {k: torch.randn(v.shape, generator=generator) * (0.05 if v.dim() > 1 else 0.01)
             for k, v in comfy.taesd.taesd.Decoder(latent_channels=4).state_dict().items()}
    save_file(state, folder / "taesd_decoder.safetensors")
    tiny = comfy_side.decoder_for(vae, 512, "auto", latent_format)
    assert isinstance(tiny, comfy_side.ComfyTinyDecoder) and tiny is comfy_side.decoder_for(vae, 512, "taesd", latent_format)
    sd3 = tiny_model("SD3")[0]
    with pytest.raises(FileNotFoundError, match=r"^decoder 'taesd' needs taesd3_decoder\.safetensors \(or \.pth\) in "
                                                + str(folder)):
        run(nodes.IdentityGuidance, model=sd3, vae=vaes[16], reference=reference, scale=2.0, start=0.0, end=1.0,
            every=1, inner_steps=1, decode_size=512, decoder="taesd")

    seen = []
    original = comfy_side.ComfyTinyDecoder.__call__

    def recording(self, latents):
        images = original(self, latents)
        seen.append((tuple(latents.shape), tuple(images.shape)))
        return images

    monkeypatch.setattr(comfy_side.ComfyTinyDecoder, "__call__", recording)
    with torch.inference_mode():
        plain = sample(patcher, channels, positive, negative, "KSampler")
        patched = run(nodes.IdentityGuidance, model=patcher, vae=vae, reference=reference, scale=3.0, start=0.0,
                      end=1.0, every=1, inner_steps=1, decode_size=512, recurrence=0, augment=0, decoder="taesd")[0]
        guided = sample(patched, channels, positive, negative, "KSampler")
    assert seen and seen[0] == ((1, 4, 8, 8), (1, 3, 64, 64))  # the model's latents in, 8 pixels per latent out
    assert torch.isfinite(guided).all() and (guided - plain).abs().mean() > 1e-3 * plain.abs().mean()

    seen.clear()
    noise = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(3))
    sigmas = comfy.samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "normal", 4)
    guider = comfy.samplers.CFGGuider(patcher)
    guider.set_conds(positive, negative)
    guider.set_cfg(2.0)
    steered = run(nodes.IdentityParticleSampler, sampler=comfy.samplers.sampler_object("euler"), vae=vae,
                  reference=reference, every=2, start=0.0, end=1.0, temperature=20.0, potential="value",
                  decode_size=64, seed=0, decoder="taesd")[0]
    out = guider.sample(noise, torch.zeros_like(noise), steered, sigmas, seed=5, disable_pbar=True)
    assert steered.sampler_function.resamplings == 1 and seen == [((2, 4, 8, 8), (2, 3, 64, 64))]
    assert torch.isfinite(out).all()
