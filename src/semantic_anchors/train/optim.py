"""The optimizer and the iteration-based poly schedule of a training module, and a new learning
rate on resume."""

from __future__ import annotations

import torch

__all__ = ["apply_config_lr", "build_optimizer"]


def build_optimizer(module) -> dict:
    """SGD or AdamW over ``module``'s trainable parameters in up to three groups (backbone, head
    and regularizer at ``head_lr_mult``, calibration at ``calibration_lr_mult``) and mmseg's poly
    schedule per step, as Lightning's ``configure_optimizers`` returns them."""
    cfg = module.config["optimizer"]
    head_names = ("decode_head", "aux_head", "head", "classifier")
    head, rest, calibration = [], [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("calibration."):
            calibration.append(param)
            continue
        is_head = name.startswith("regularizer.") or any(f".{h}" in f".{name}" for h in head_names)
        (head if is_head else rest).append(param)
    groups = [{"params": rest, "lr": cfg["lr"]}]
    if head:
        groups.append({"params": head, "lr": cfg["lr"] * cfg["head_lr_mult"]})
    if calibration:  # finetune.calibration: its own learning rate
        mult = (module.config.get("finetune") or {}).get("calibration_lr_mult") or 1.0
        groups.append({"params": calibration, "lr": cfg["lr"] * mult})
    groups = [g for g in groups if g["params"]] or groups  # a stage 2 may train no backbone
    name = cfg["name"].lower()
    if name == "sgd":
        optimizer = torch.optim.SGD(
            groups, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"]
        )
    elif name == "adamw":
        optimizer = torch.optim.AdamW(
            groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"]
        )
    else:
        raise ValueError(f"optimizer.name must be 'sgd' or 'adamw', got {cfg['name']!r}")
    base_lr = cfg["lr"]

    def poly(step: int) -> float:
        # mmseg's poly: (lr - min_lr) * (1 - t / T) ** p + min_lr, plus optional linear warmup.
        total = max(1, int(module.config["trainer"]["max_steps"]))
        factor = (1 - min(step, total) / total) ** cfg["poly_power"]
        value = ((base_lr - cfg["min_lr"]) * factor + cfg["min_lr"]) / base_lr
        warm = int(cfg["warmup_steps"])
        if warm > 0 and step < warm:
            value *= (step + 1) / warm
        return max(value, 0.0)

    module._base_lrs = [g["lr"] for g in groups]  # what a resume with a new lr applies
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
    }


def apply_config_lr(module) -> None:
    """A resume restores the optimizer's learning rates from the checkpoint; where the config
    now asks for others (``--allow-change --set optimizer.lr=...``), the schedule continues
    from the current step with the new base rates (an unchanged resume is left untouched)."""
    wanted = getattr(module, "_base_lrs", None)
    for cfg in module.trainer.lr_scheduler_configs if wanted else ():
        sched = cfg.scheduler
        if list(sched.base_lrs) == wanted or len(sched.base_lrs) != len(wanted):
            continue
        sched.base_lrs = list(wanted)
        for group, base, fn in zip(
            sched.optimizer.param_groups, wanted, sched.lr_lambdas, strict=True
        ):
            group["initial_lr"] = base
            group["lr"] = base * fn(sched.last_epoch)
