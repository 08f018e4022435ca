"""Measurements of ``gpu_check.py``: training steps with and without SAR, and the p2a term.

Every figure comes from the project's public API (``create_model``, ``build_regularizer``,
``model.forward_train``, ``pixel_to_anchor_loss``); only the naive one-hot pixel-to-anchor loss,
the reference it is compared with, is written here. Times are medians of interleaved steps after
warm-up, read from CUDA events on a GPU (the wall clock on CPU); peak memory is
``torch.cuda.max_memory_allocated`` of one step after ``empty_cache`` and
``reset_peak_memory_stats`` (on CPU the resident-set high-water mark, see ``_memory.py``).
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _memory import measure_peak

from semantic_anchors.functional import pixel_to_anchor_loss, resize_labels
from semantic_anchors.models import create_model
from semantic_anchors.regularizers.registry import build_regularizer

IGNORE = 255
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


# ---------------------------------------------------------------------------- helpers
def ratio(value: float, base: float) -> float | None:
    """``value / base``, or None where the base is not positive (a CPU peak below a page)."""
    return value / base if base > 0 else None


def autocast(device: torch.device, amp: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the autocast context of ``amp`` (``"fp32"``: no autocast)."""
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def free_memory(device: torch.device) -> None:
    """Drop what earlier configurations left, so the next peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def interleaved_ms(
    fns: dict[str, Callable[[], None]], device: torch.device, warmup: int, steps: int
) -> dict[str, float]:
    """Median milliseconds per call of each function, the calls interleaved after ``warmup``.

    On a GPU each call is bracketed by CUDA events (no host sync between calls, so the device
    queue stays as full as in training); on CPU by the wall clock.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    cuda = device.type == "cuda"
    samples: dict[str, list] = {key: [] for key in fns}
    for _ in range(steps):
        for key, fn in fns.items():
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                samples[key].append((start, end))
            else:
                begin = time.perf_counter()
                fn()
                samples[key].append((time.perf_counter() - begin) * 1e3)
    if cuda:
        torch.cuda.synchronize(device)
        samples = {k: [s.elapsed_time(e) for s, e in pairs] for k, pairs in samples.items()}
    return {key: statistics.median(values) for key, values in samples.items()}


def make_batch(batch: int, crop: tuple[int, int], num_classes: int, device: torch.device):
    """Random images ``(B, 3, H, W)`` and labels ``(B, H, W)`` with ignored top rows."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *crop, generator=generator).to(device)  # (B, 3, H, W)
    labels = torch.randint(0, num_classes, (batch, *crop), generator=generator)  # (B, H, W)
    labels[:, : crop[0] // 8] = IGNORE  # some ignored rows, as in real crops
    return images, labels.to(device)


# ---------------------------------------------------------------------------- training step
def build_model(name: str, num_classes: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device(device):  # parameters are created on the device: fast on a GPU
        model = create_model(name, num_classes=num_classes)
    return model.to(device).train()


def build_sar(model, num_classes: int, device: torch.device, *, validate: bool):
    """SAR with the paper's defaults through the regularizer registry, as recipes build it."""
    torch.manual_seed(1)
    sar = build_regularizer(
        "sar", num_classes, model.feat_dim, dense=model.dense, validate=validate
    )
    return sar.to(device).train()


def training_loss(model, sar, images, labels, amp) -> torch.Tensor:
    """CE (+ the auxiliary head's CE) (+ SAR), as ``train/module.py`` computes it."""
    with amp():
        out = model.forward_train(images)
        loss = F.cross_entropy(out.logits, labels, ignore_index=IGNORE)
        if out.aux_logits is not None and model.aux_loss_weight > 0:
            aux = F.cross_entropy(out.aux_logits, labels, ignore_index=IGNORE)
            loss = loss + model.aux_loss_weight * aux
        if sar is not None:
            loss = loss + sar(out.features, labels, model.classifier)
    return loss


def sgd(modules) -> torch.optim.Optimizer:
    params = [p for m in modules for p in m.parameters()]
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)


def make_step(model, sar, optimizer, images, labels, amp, loss_fn=None) -> Callable[[], None]:
    """One SGD step; ``loss_fn`` replaces :func:`training_loss` (e.g. a compiled one)."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if loss_fn is None:
            loss = training_loss(model, sar, images, labels, amp)
        else:
            loss = loss_fn(images, labels)
        loss.backward()
        optimizer.step()

    return step


def measure_model(name: str, num_classes: int, crop, cfg: dict) -> dict:
    """Step time (CE, CE + SAR, CE + SAR with per-step checks) and peak memory (CE, CE + SAR)."""
    device = torch.device(cfg["device"])
    amp = autocast(device, cfg["amp"])
    images, labels = make_batch(cfg["batch"], crop, num_classes, device)
    peaks = {}
    for variant in ("ce", "sar"):  # each configuration alone on the device
        free_memory(device)
        model = build_model(name, num_classes, device)
        sar = build_sar(model, num_classes, device, validate=False) if variant == "sar" else None
        optimizer = sgd([model] if sar is None else [model, sar])
        step = make_step(model, sar, optimizer, images, labels, amp)
        for _ in range(cfg["memory_warmup"]):  # optimizer state and allocator settle
            step()
        peaks[variant] = measure_peak(step, device)["peak_mib"]
        del model, sar, optimizer, step
    free_memory(device)
    # One model for the timing: the three losses share its weights and its kernels.
    model = build_model(name, num_classes, device)
    fast = build_sar(model, num_classes, device, validate=False)
    checked = build_sar(model, num_classes, device, validate=True)
    optimizer = sgd([model, fast, checked])
    fns = {
        "ce": make_step(model, None, optimizer, images, labels, amp),
        "sar": make_step(model, fast, optimizer, images, labels, amp),
        "sar_checked": make_step(model, checked, optimizer, images, labels, amp),
    }
    times = interleaved_ms(fns, device, cfg["warmup"], cfg["steps"])
    with torch.no_grad(), amp():
        feats = model.forward_features(images[:1]).shape[-2:]
    feat_dim = model.feat_dim
    del model, fast, checked, optimizer, fns
    free_memory(device)
    return {
        "model": name, "crop": list(crop), "classes": num_classes, "batch": cfg["batch"],
        "feat_dim": feat_dim, "features_hw": list(feats),
        "ce_ms": times["ce"], "sar_ms": times["sar"], "sar_checked_ms": times["sar_checked"],
        "time_ratio": ratio(times["sar"], times["ce"]),
        "checked_time_ratio": ratio(times["sar_checked"], times["ce"]),
        "ce_peak_mib": peaks["ce"], "sar_peak_mib": peaks["sar"],
        "peak_ratio": ratio(peaks["sar"], peaks["ce"]),
    }  # fmt: skip


# ---------------------------------------------------------------------------- p2a term
def naive_p2a(features, labels, anchors, valid) -> torch.Tensor:
    """The one-hot formulation: one-hot labels, anchors gathered by einsum, masked MSE.

    The mean over valid pixels of the mean over channels of ``(f - A[y])^2``, built the obvious
    way: a ``(B, C, h, w)`` one-hot, a dense ``(B, D, h, w)`` target map and an unreduced
    ``(B, D, h, w)`` squared-error map.
    """
    num_classes, dim = anchors.shape
    safe = torch.where(valid, labels, torch.zeros_like(labels))  # (B, h, w)
    one_hot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(features.dtype)  # (B, C, h, w)
    target = torch.einsum("bchw,cd->bdhw", one_hot, anchors.to(features.dtype))  # (B, D, h, w)
    mask = valid[:, None].to(features.dtype)  # (B, 1, h, w)
    squared = F.mse_loss(features, target, reduction="none") * mask  # (B, D, h, w)
    return squared.sum() / (valid.sum().clamp(min=1) * dim)


def measure_p2a(num_classes: int, crop, cfg: dict) -> dict:
    """Forward + backward of ours and of the one-hot loss on the same inputs."""
    device = torch.device(cfg["device"])
    stride = cfg["output_stride"]
    h, w = crop[0] // stride, crop[1] // stride
    generator = torch.Generator().manual_seed(0)
    shape = (cfg["batch"], cfg["feat_dim"], h, w)
    features = torch.randn(*shape, generator=generator).to(device).requires_grad_()
    _, full = make_batch(cfg["batch"], tuple(crop), num_classes, device)
    labels = resize_labels(full, (h, w))  # (B, h, w)
    valid = labels != IGNORE  # (B, h, w)
    anchors = torch.randn(num_classes, cfg["feat_dim"], generator=generator).to(device)
    losses = {"ours": pixel_to_anchor_loss, "naive": naive_p2a}

    def runner(fn):
        def run():
            fn(features, labels, anchors, valid).backward()
            features.grad = None

        return run

    values, grads = {}, {}
    for key, fn in losses.items():
        loss = fn(features, labels, anchors, valid)
        (grads[key],) = torch.autograd.grad(loss, features)
        values[key] = float(loss.detach())
    peaks = {}
    for key, fn in losses.items():
        free_memory(device)
        runner(fn)()  # warm-up
        peaks[key] = measure_peak(runner(fn), device)["extra_mib"]
    times = interleaved_ms({k: runner(f) for k, f in losses.items()}, device, 2, cfg["reps"])
    scale = float(grads["naive"].abs().max().clamp(min=1e-30))
    return {
        "classes": num_classes, "features": list(shape),
        "grad_mib": features.numel() * features.element_size() / 2**20,
        "ours_ms": times["ours"], "naive_ms": times["naive"],
        "time_ratio": ratio(times["ours"], times["naive"]),
        "ours_mib": peaks["ours"], "naive_mib": peaks["naive"],
        "memory_ratio": ratio(peaks["ours"], peaks["naive"]),
        "loss_ours": values["ours"], "loss_naive": values["naive"],
        "loss_rel_diff": abs(values["ours"] - values["naive"]) / max(abs(values["naive"]), 1e-30),
        "grad_rel_max_diff": float((grads["ours"] - grads["naive"]).abs().max()) / scale,
    }  # fmt: skip
