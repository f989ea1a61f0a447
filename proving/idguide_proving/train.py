"""Reproduce the proving ground's weights from seeds (CPU, deterministic).

    python -m idguide_proving.train                      # every model into idguide_proving/weights
    python -m idguide_proving.train --only oracle,guide --out /tmp/pg
    python -m idguide_proving.train --only latent        # the latent world's four models

The pixel world's models train on one pool of renders (seeds ``0 .. POOL-1``, identity
``seed % K``); the latent world's on a pool of scene-named renders (the same seeds, background
and side cycling with the seed, so every prompt is equally common). Evaluation always uses
fresh renders (seeds from ``FRESH_SEED`` on), never seen in training. Timings and held-out
numbers go to ``training.json`` beside the weights. The latent models train in order: the
autoencoder before the tiny one (distilled from it) and the denoiser (on its latents).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .models import FILES, PREPROCESS, WEIGHTS, GuideNet, JudgeNet, OracleNet, SceneOracleNet, generator_unet
from .world import BACKGROUNDS, IDENTITIES, NUM_CATEGORIES, NUM_IDENTITIES, SIDES, fresh_renders, render_batch

POOL = 64_000
SCENE_POOL = 32_640  # a multiple of 32 identities × 3 backgrounds × 2 sides
RECONSTRUCTED = 8_064  # scene-pool images the scene oracle also sees through the autoencoder
SEEDS = {"oracle": 11, "guide": 22, "judge": 33, "generator": 44, "scene_oracle": 55, "autoencoder": 66,
         "tiny_autoencoder": 77, "latent_generator": 88}
PIXEL = ("oracle", "guide", "judge", "generator")
LATENT = ("autoencoder", "scene_oracle", "tiny_autoencoder", "latent_generator")  # in this order: see main


def scene_labels(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identity, background and side of the scene pool's render of each seed (every combination
    equally often in each run of 192 seeds)."""
    return seeds % NUM_IDENTITIES, (seeds // NUM_IDENTITIES) % len(BACKGROUNDS), \
        (seeds // (NUM_IDENTITIES * len(BACKGROUNDS))) % len(SIDES)


def render_pool(n: int = POOL, chunk: int = 2000, scenes: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[n,3,H,W]`` renders and their labels: identity ``seed % K`` (``[n]``), or with
    ``scenes`` (identity, background, side) (``[n, 3]``) with the scene named."""
    seeds = np.arange(n)
    ids, backgrounds, sides = scene_labels(seeds)
    parts = []
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        named = (backgrounds[part], sides[part]) if scenes else (None, None)
        parts.append((render_batch(ids[part], seeds[part], *named) * 255).round().to(torch.uint8))
        print(f"  rendered {min(start + chunk, n)}/{n}", end="\r", flush=True)
    print()
    labels = np.stack([ids, backgrounds, sides], 1) if scenes else ids
    return torch.cat(parts), torch.from_numpy(labels)


# --- augmentations (identity-preserving: nothing here changes colour, shape or density) ------
def shift(x: torch.Tensor, g: torch.Generator, pad: int) -> torch.Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def augment(x: torch.Tensor, g: torch.Generator, kind: str) -> torch.Tensor:
    """Float batch in [0, 1]; each model sees its own augmentations."""
    if kind != "scene_oracle":  # a flip would swap the side
        flip = torch.rand(len(x), generator=g) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if kind == "guide":
        return shift(x, g, 2)
    x = shift(x, g, 1 if kind == "scene_oracle" else 3)
    blur = torch.rand(len(x), generator=g) < 0.3
    soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur.view(-1, 1, 1, 1), 0.5 * x + 0.5 * soft, x)
    sigma = torch.rand(len(x), 1, 1, 1, generator=g) * {"oracle": 0.05, "judge": 0.08, "scene_oracle": 0.02}[kind]
    x = x + sigma * torch.randn(x.shape, generator=g)
    if kind == "judge":
        x = x * (0.9 + 0.2 * torch.rand(len(x), 1, 1, 1, generator=g))
    return x.clamp(0, 1)


def batches(pool: torch.Tensor, ids: torch.Tensor, size: int, steps: int, g: torch.Generator):
    for _ in range(steps):
        index = torch.randint(0, len(pool), (size,), generator=g)
        yield pool[index].float() / 255, ids[index]


def schedule(optimizer, steps: int, warmup: int = 100):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss: every other view of the same identity is a positive,
    every other identity — its near-identical twin included — a negative."""
    z = F.normalize(z, dim=-1)
    logits = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool)
    logits = logits.masked_fill(eye, -1e9)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    count = positives.sum(1).clamp_min(1)
    return -(log_prob * positives).sum(1).div(count)[positives.any(1)].mean()


def log(kind: str, step: int, steps: int, loss: float, started: float) -> None:
    if step % 100 == 0 or step == steps:
        print(f"  {kind} step {step}/{steps} loss {loss:.4f} ({time.time() - started:.0f} s)", flush=True)


# --- the four models -----------------------------------------------------------------------
def fit(kind: str, net: torch.nn.Module, loss_of, steps: int, pool, ids, batch: int, lr: float, extra=()) -> torch.nn.Module:
    """The scorers' and oracle's loop: seeded sampling and augmentation, AdamW, warm-up + cosine."""
    g = torch.Generator().manual_seed(SEEDS[kind])
    optimizer = torch.optim.AdamW([*net.parameters(), *extra], lr=lr, weight_decay=1e-4)
    scheduler = schedule(optimizer, steps)
    started = time.time()
    for step, (x, y) in enumerate(batches(pool, ids, batch, steps, g), 1):
        loss = loss_of(net(PREPROCESS(augment(x, g, kind))), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        log(kind, step, steps, loss.item(), started)
    return net.eval()


def train_classifier(pool, ids, steps: int, kind: str = "oracle"):
    torch.manual_seed(SEEDS[kind])
    loss_of = lambda logits, y: F.cross_entropy(logits, y, label_smoothing=0.05)  # noqa: E731
    return fit(kind, OracleNet(), loss_of, steps, pool, ids, 128, 2e-3)


def train_guide(pool, ids, steps: int):
    torch.manual_seed(SEEDS["guide"])
    return fit("guide", GuideNet(), supcon, steps, pool, ids, 256, 1e-3)


def train_judge(pool, ids, steps: int, scale: float = 16.0, margin: float = 0.25):
    """CosFace: a normalised K-way classifier with a margin (other loss, seed, augmentations)."""
    torch.manual_seed(SEEDS["judge"])
    net = JudgeNet()
    centres = torch.nn.Parameter(torch.randn(NUM_IDENTITIES, 96) * 0.1)

    def loss_of(z, y):
        cos = F.normalize(z, dim=-1) @ F.normalize(centres, dim=-1).T
        return F.cross_entropy(scale * (cos - margin * F.one_hot(y, NUM_IDENTITIES)), y)

    return fit("judge", net, loss_of, steps, pool, ids, 128, 2e-3, extra=[centres])


def denoiser_update(unet, optimizer, lr, ema: dict, loss: torch.Tensor, step: int) -> None:
    """One optimiser step of a denoiser (gradients clipped to norm 1) and its EMA (decay warming up to 0.999)."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    lr.step()
    decay = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        for k, v in unet.state_dict().items():
            ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay) if v.dtype.is_floating_point else ema[k].copy_(v)


def train_generator(pool, ids, steps: int, batch: int = 64, drop: float = 0.1):
    """Epsilon-prediction DDPM on the training schedule; category labels dropped for CFG; EMA kept."""
    from diffusers import DDPMScheduler

    from .pipeline import TRAIN_SCHEDULE

    g = torch.Generator().manual_seed(SEEDS["generator"])
    torch.manual_seed(SEEDS["generator"])
    unet = generator_unet()
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    noise_schedule = DDPMScheduler(**TRAIN_SCHEDULE)
    categories = torch.tensor([i.category for i in IDENTITIES])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
    lr = schedule(optimizer, steps, warmup=200)
    started = time.time()
    for step, (x, y) in enumerate(batches(pool, ids, batch, steps, g), 1):
        x0 = F.pixel_unshuffle(x * 2 - 1, 2)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(x0),), generator=g)
        labels = torch.where(torch.rand(len(x0), generator=g) < drop, NUM_CATEGORIES, categories[y])
        prediction = unet(noise_schedule.add_noise(x0, noise, t), t, class_labels=labels).sample
        loss = F.mse_loss(prediction, noise)
        denoiser_update(unet, optimizer, lr, ema, loss, step)
        log("generator", step, steps, loss.item(), started)
    unet.load_state_dict(ema)
    return unet.eval()


# --- the latent world ----------------------------------------------------------------------
def train_scene_oracle(pool, labels, steps: int):
    torch.manual_seed(SEEDS["scene_oracle"])
    nb = len(BACKGROUNDS)

    def loss_of(logits, y):
        return F.cross_entropy(logits[:, :nb], y[:, 1]) + F.cross_entropy(logits[:, nb:], y[:, 2])

    return fit("scene_oracle", SceneOracleNet(), loss_of, steps, pool, labels, 128, 2e-3)


def train_autoencoder(pool, steps: int, batch: int = 32, kl: float = 1e-5):
    """L1 + L2 reconstruction with a small KL term (as SD's VAE, without the adversarial part);
    the scaling factor is 1 / std of the latents of 2,048 pool images, as SD's was chosen."""
    from .latent import autoencoder

    g = torch.Generator().manual_seed(SEEDS["autoencoder"])
    torch.manual_seed(SEEDS["autoencoder"])
    vae = autoencoder()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    lr = schedule(optimizer, steps)
    started = time.time()
    for step, (x, _) in enumerate(batches(pool, torch.zeros(len(pool)), batch, steps, g), 1):
        x = torch.where((torch.rand(len(x), generator=g) < 0.5).view(-1, 1, 1, 1), x.flip(-1), x) * 2 - 1
        posterior = vae.encode(x).latent_dist
        out = vae.decode(posterior.sample(generator=g)).sample
        loss = (out - x).abs().mean() + (out - x).pow(2).mean() + kl * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr.step()
        log("autoencoder", step, steps, loss.item(), started)
    vae.eval()
    with torch.no_grad():
        latents = vae.encode(pool[:2048].float() / 127.5 - 1).latent_dist.sample(generator=g)
    vae.register_to_config(scaling_factor=float(1 / latents.std()))
    return vae


def encode_pool(vae, pool, chunk: int = 512) -> torch.Tensor:
    """Scaled latents (posterior means × scaling factor) of every pool image."""
    with torch.no_grad():
        return torch.cat([vae.encode(pool[i:i + chunk].float() / 127.5 - 1).latent_dist.mean
                          for i in range(0, len(pool), chunk)]) * vae.config.scaling_factor


def reconstruct(vae, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """uint8 images through the autoencoder and back (what every generated image goes through)."""
    with torch.no_grad():
        out = [vae.decode(vae.encode(images[i:i + chunk].float() / 127.5 - 1).latent_dist.mean).sample
               for i in range(0, len(images), chunk)]
    return ((torch.cat(out) / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)


def train_tiny_autoencoder(pool, latents, steps: int, batch: int = 64):
    """TAESD-style distillation into the full autoencoder's latent space: the tiny decoder learns
    to decode the full encoder's scaled latents into the images, the tiny encoder to produce them."""
    from .latent import tiny_autoencoder

    g = torch.Generator().manual_seed(SEEDS["tiny_autoencoder"])
    torch.manual_seed(SEEDS["tiny_autoencoder"])
    tiny = tiny_autoencoder()
    optimizer = torch.optim.AdamW(tiny.parameters(), lr=3e-3, weight_decay=0.0)
    lr = schedule(optimizer, steps)
    started = time.time()
    for step in range(1, steps + 1):
        index = torch.randint(0, len(pool), (batch,), generator=g)
        x, z = pool[index].float() / 127.5 - 1, latents[index]
        out = tiny.decode(z).sample
        loss = (out - x).abs().mean() + (out - x).pow(2).mean() + (tiny.encode(x).latents - z).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr.step()
        log("tiny_autoencoder", step, steps, loss.item(), started)
    return tiny.eval()


def train_latent_generator(latents, labels, steps: int, batch: int = 128, drop: float = 0.1):
    """ε-prediction DDPM on scaled latents; the whole prompt dropped with probability ``drop`` and
    each attribute alone with ``drop`` (classifier-free guidance, prompts naming less); EMA kept."""
    from diffusers import DDPMScheduler

    from .latent import denoiser
    from .pipeline import TRAIN_SCHEDULE

    g = torch.Generator().manual_seed(SEEDS["latent_generator"])
    torch.manual_seed(SEEDS["latent_generator"])
    unet = denoiser()
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    noise_schedule = DDPMScheduler(**TRAIN_SCHEDULE)
    prompt = torch.stack([torch.tensor([IDENTITIES[i].category for i in labels[:, 0].tolist()]), labels[:, 1],
                          labels[:, 2]], 1)
    null = torch.tensor(unet.class_embedding.SIZES)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
    lr = schedule(optimizer, steps, warmup=200)
    started = time.time()
    for step in range(1, steps + 1):
        index = torch.randint(0, len(latents), (batch,), generator=g)
        x0, y = latents[index], prompt[index]
        dropped = (torch.rand(batch, 1, generator=g) < drop) | (torch.rand(batch, 3, generator=g) < drop)
        y = torch.where(dropped, null, y)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,), generator=g)
        loss = F.mse_loss(unet(noise_schedule.add_noise(x0, noise, t), t, class_labels=y).sample, noise)
        denoiser_update(unet, optimizer, lr, ema, loss, step)
        log("latent_generator", step, steps, loss.item(), started)
    unet.load_state_dict(ema)
    return unet.eval()


# --- held-out checks -----------------------------------------------------------------------
@torch.no_grad()
def oracle_accuracy(net, images, ids) -> dict:
    predictions = torch.cat([net(PREPROCESS(images[i:i + 512])).argmax(-1) for i in range(0, len(images), 512)])
    twins = torch.tensor([IDENTITIES[int(p)].twin for p in ids])
    return {"accuracy": (predictions == ids).float().mean().item(),
            "twin_confusion": (predictions == twins).float().mean().item()}


@torch.no_grad()
def scorer_checks(net, images, ids) -> dict:
    """Same identity vs its twin vs other identities: mean cosines and 1-NN identity accuracy."""
    z = F.normalize(torch.cat([net(PREPROCESS(images[i:i + 512])) for i in range(0, len(images), 512)]), dim=-1)
    sim = z @ z.T
    sim.fill_diagonal_(-2)
    same = ids[:, None] == ids[None, :]
    twins = torch.tensor([IDENTITIES[int(i)].twin for i in ids])
    twin = twins[:, None] == ids[None, :]
    nearest = ids[sim.argmax(1)]
    return {"same": sim[same & (sim > -2)].mean().item(), "twin": sim[twin].mean().item(),
            "other": sim[~same & ~twin].mean().item(), "nn_accuracy": (nearest == ids).float().mean().item()}


@torch.no_grad()
def scene_accuracy(net, images, labels) -> dict:
    logits = torch.cat([net(PREPROCESS(images[i:i + 512])) for i in range(0, len(images), 512)])
    nb = len(BACKGROUNDS)
    return {"background_accuracy": (logits[:, :nb].argmax(-1) == labels[:, 1]).float().mean().item(),
            "side_accuracy": (logits[:, nb:].argmax(-1) == labels[:, 2]).float().mean().item()}


@torch.no_grad()
def decoded_checks(decode, latents, images, labels, oracle_weights, scene: bool = False, scene_weights=None) -> dict:
    """The oracles on decodes of fresh renders' latents: do identity (and scene) survive?"""
    from .models import Oracle, SceneOracle

    decoded = torch.cat([decode(latents[i:i + 256]) for i in range(0, len(latents), 256)])
    checks = {"mean_abs_error": (decoded - images).abs().mean().item(),
              "oracle_accuracy": (Oracle(oracle_weights).probabilities(decoded).argmax(-1) == labels[:, 0])
              .float().mean().item()}
    if scene:
        background, side = SceneOracle(scene_weights).predict(decoded)
        checks["scene_oracle_background"] = (background == labels[:, 1]).float().mean().item()
        checks["scene_oracle_side"] = (side == labels[:, 2]).float().mean().item()
    return checks


def flops_per_image(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def save(module, kind: str, out: Path, half: bool = False, metadata: dict | None = None) -> None:
    state = {k: (v.half() if half and v.dtype == torch.float32 else v).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(out / FILES[kind]), metadata={"seed": str(SEEDS[kind]), **(metadata or {})})


STEPS = {"oracle": 1500, "guide": 800, "judge": 1000, "generator": 2000, "scene_oracle": 1000, "autoencoder": 2000,
         "tiny_autoencoder": 2000, "latent_generator": 2000}


def kinds_of(only: str) -> list[str]:
    """``--only``: model kinds, or ``pixel`` / ``latent`` / ``all`` for a world's (every) model."""
    groups = {"pixel": PIXEL, "latent": LATENT, "all": PIXEL + LATENT}
    kinds = [k for part in only.split(",") for k in groups.get(part, (part,))]
    unknown = [k for k in kinds if k not in STEPS]
    if unknown:
        raise SystemExit(f"unknown model kind(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}, pixel, latent, all")
    return kinds


def main(argv=None) -> None:
    from .latent import load_autoencoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--only", default="all", help="model kinds (comma-separated), or pixel, latent, all")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (quick trials)")
    args = parser.parse_args(argv)
    kinds = kinds_of(args.only)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "training.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}

    def write() -> None:
        report_path.write_text(json.dumps(report, indent=2) + "\n")

    def trained(kind: str):  # a model this run wrote, else the shipped one
        return args.out if (args.out / FILES[kind]).is_file() else None

    started = time.time()
    if any(k in PIXEL for k in kinds):
        pool, ids = render_pool()
        report["pool"] = {"renders": len(pool), "seconds": round(time.time() - started, 1)}
        test_ids = torch.arange(NUM_IDENTITIES).repeat_interleave(64)
        test_images = fresh_renders(test_ids.tolist())
    if any(k in LATENT for k in kinds):
        t0 = time.time()
        scene_pool, scene_labels_ = render_pool(SCENE_POOL, scenes=True)
        report["scene_pool"] = {"renders": len(scene_pool), "seconds": round(time.time() - t0, 1)}
        scene_test_labels = torch.from_numpy(np.stack(scene_labels(np.arange(2 * 192)), 1))
        scene_test = fresh_renders(scene_test_labels[:, 0].tolist(), 3_000_000, scene_test_labels[:, 1].tolist(),
                                   scene_test_labels[:, 2].tolist())
    trainers = {"oracle": train_classifier, "guide": train_guide, "judge": train_judge, "generator": train_generator}
    latents = None
    for kind in kinds:
        steps = max(1, int(STEPS[kind] * args.steps_scale))
        print(f"{kind}: {steps} steps", flush=True)
        t0 = time.time()
        entry, half, metadata = {"steps": steps, "seed": SEEDS[kind]}, kind in ("generator", "latent_generator", "autoencoder"), {}
        if kind in trainers:
            net = trainers[kind](pool, ids, steps)
        elif kind == "scene_oracle":  # on renders and on their trip through the autoencoder
            recon = reconstruct(load_autoencoder(trained("autoencoder")), scene_pool[:RECONSTRUCTED])
            net = train_scene_oracle(torch.cat([scene_pool, recon]),
                                     torch.cat([scene_labels_, scene_labels_[:RECONSTRUCTED]]), steps)
        elif kind == "autoencoder":
            net = train_autoencoder(scene_pool, steps)
            metadata = {"scaling_factor": repr(net.config.scaling_factor)}
        elif kind == "tiny_autoencoder":
            latents = encode_pool(load_autoencoder(trained("autoencoder")), scene_pool) if latents is None else latents
            net = train_tiny_autoencoder(scene_pool, latents, steps)
        else:
            latents = encode_pool(load_autoencoder(trained("autoencoder")), scene_pool) if latents is None else latents
            net = train_latent_generator(latents, scene_labels_, steps)
        entry["seconds"] = round(time.time() - t0, 1)
        save(net, kind, args.out, half=half, metadata=metadata)
        if kind == "oracle":
            entry.update(oracle_accuracy(net, test_images, test_ids))
        elif kind in ("guide", "judge"):
            entry.update(scorer_checks(net, test_images, test_ids))
        elif kind == "scene_oracle":
            entry.update(scene_accuracy(net, scene_test, scene_test_labels))
            through = reconstruct(load_autoencoder(trained("autoencoder")), (scene_test * 255).round().to(torch.uint8))
            entry.update({f"{k}_through_autoencoder": v
                          for k, v in scene_accuracy(net, through.float() / 255, scene_test_labels).items()})
        elif kind in ("autoencoder", "tiny_autoencoder"):
            vae = load_autoencoder(trained("autoencoder"))
            factor = vae.config.scaling_factor
            test_latents = encode_pool(vae, (scene_test * 255).round().to(torch.uint8))
            if kind == "autoencoder":
                entry["scaling_factor"] = factor
                decode = lambda z: (vae.decode(z / factor).sample / 2 + 0.5).clamp(0, 1)  # noqa: E731
            else:
                decode = lambda z: (net.decode(z).sample / 2 + 0.5).clamp(0, 1)  # noqa: E731
            entry.update(decoded_checks(decode, test_latents, scene_test, scene_test_labels, trained("oracle"),
                                        kind == "tiny_autoencoder", trained("scene_oracle")))
            entry["decoder_mflops_per_image"] = round(flops_per_image(lambda: decode(test_latents[:1])) / 1e6, 2)
        report[kind] = entry
        print(f"  {kind}: {entry}", flush=True)
        write()
    report["total_seconds_this_run"] = round(time.time() - started, 1)
    # every model's training and the pools it needs, whichever runs trained them
    report["total_seconds_every_model"] = round(sum(report[k]["seconds"] for k in ("pool", "scene_pool", *STEPS)
                                                    if k in report), 1)
    write()


if __name__ == "__main__":
    main()
