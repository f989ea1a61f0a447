"""Reproduce the proving ground's weights from seeds (CPU, deterministic).

    python -m idguide.proving.train                      # all four models into proving/weights
    python -m idguide.proving.train --only oracle,guide --out /tmp/pg

Every model trains on one pool of renders (seeds ``0 .. POOL-1``, identity ``seed % K``);
evaluation always uses fresh renders (seeds from ``FRESH_SEED`` on), never seen in training.
Timings and held-out numbers go to ``training.json`` beside the weights.
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

from .models import FILES, PREPROCESS, WEIGHTS, GuideNet, JudgeNet, OracleNet, generator_unet
from .world import IDENTITIES, NUM_CATEGORIES, NUM_IDENTITIES, fresh_renders, render_batch

POOL = 64_000
SEEDS = {"oracle": 11, "guide": 22, "judge": 33, "generator": 44}


def render_pool(n: int = POOL, chunk: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[n,3,H,W]`` renders and their identities (identity ``seed % K``)."""
    seeds = np.arange(n)
    ids = seeds % NUM_IDENTITIES
    parts = []
    for start in range(0, n, chunk):
        parts.append((render_batch(ids[start:start + chunk], seeds[start:start + chunk]) * 255).round().to(torch.uint8))
        print(f"  rendered {min(start + chunk, n)}/{n}", end="\r", flush=True)
    print()
    return torch.cat(parts), torch.from_numpy(ids)


# --- augmentations (identity-preserving: nothing here changes colour, shape or density) ------
def shift(x: torch.Tensor, g: torch.Generator, pad: int) -> torch.Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def augment(x: torch.Tensor, g: torch.Generator, kind: str) -> torch.Tensor:
    """Float batch in [0, 1]; each model sees its own augmentations."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if kind == "guide":
        return shift(x, g, 2)
    x = shift(x, g, 3)
    blur = torch.rand(len(x), generator=g) < 0.3
    soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur.view(-1, 1, 1, 1), 0.5 * x + 0.5 * soft, x)
    sigma = torch.rand(len(x), 1, 1, 1, generator=g) * (0.08 if kind == "judge" else 0.05)
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
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in unet.state_dict().items():
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay) if v.dtype.is_floating_point else ema[k].copy_(v)
        log("generator", step, steps, loss.item(), started)
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


def save(module, kind: str, out: Path, half: bool = False) -> None:
    state = {k: (v.half() if half and v.dtype == torch.float32 else v).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(out / FILES[kind]), metadata={"seed": str(SEEDS[kind])})


STEPS = {"oracle": 1500, "guide": 800, "judge": 1000, "generator": 2000}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--only", default="oracle,guide,judge,generator")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (quick trials)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "training.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    started = time.time()
    pool, ids = render_pool()
    report["pool"] = {"renders": len(pool), "seconds": round(time.time() - started, 1)}
    test_ids = torch.arange(NUM_IDENTITIES).repeat_interleave(64)
    test_images = fresh_renders(test_ids.tolist())
    trainers = {"oracle": train_classifier, "guide": train_guide, "judge": train_judge, "generator": train_generator}
    for kind in args.only.split(","):
        steps = max(1, int(STEPS[kind] * args.steps_scale))
        print(f"{kind}: {steps} steps", flush=True)
        t0 = time.time()
        net = trainers[kind](pool, ids, steps)
        entry = {"steps": steps, "seconds": round(time.time() - t0, 1), "seed": SEEDS[kind]}
        if kind == "oracle":
            entry.update(oracle_accuracy(net, test_images, test_ids))
        elif kind in ("guide", "judge"):
            entry.update(scorer_checks(net, test_images, test_ids))
        save(net, kind, args.out, half=kind == "generator")
        report[kind] = entry
        print(f"  {kind}: {entry}", flush=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    report["total_seconds_this_run"] = round(time.time() - started, 1)
    report_path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
