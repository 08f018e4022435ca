"""The LightningModule: any registered model + any regularizer + any loss, one config."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from semantic_anchors.inference import predict_logits
from semantic_anchors.train.checkpoint import capture_rng, restore_rng
from semantic_anchors.train.divergence import (
    NonFiniteTracker,
    TrainingDiverged,
    guard_step,
    snapshot_buffers,
)
from semantic_anchors.train.finetune import freeze_for_stage2
from semantic_anchors.train.mixup import mixup_batch
from semantic_anchors.train.optim import apply_config_lr, build_optimizer
from semantic_anchors.train.parts import build_parts

__all__ = ["AnchorModule"]


class AnchorModule(L.LightningModule):
    """Trains ``model`` with ``loss`` + ``aux_loss_weight * aux loss`` + ``regularizer`` (a
    model that owns its loss, e.g. Mask2Former: its loss + ``regularizer`` on its queries).

    The parts come from :func:`~semantic_anchors.train.parts.build_parts`, which takes the same
    arguments (``config``, ``data_info``, ``anchors``) and documents them.
    """

    def __init__(self, config: dict, data_info: dict, anchors: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config, self.data_info = config, data_info
        self.task = data_info["task"]
        self.num_classes = data_info["num_classes"]
        self.ignore_index = data_info["ignore_index"]
        parts = build_parts(config, data_info, anchors)
        self.model, self.regularizer = parts.model, parts.regularizer
        self.criterion, self.calibration = parts.criterion, parts.calibration
        self.val_metrics, self.monitor = parts.val_metrics, parts.monitor
        self.owns_loss = bool(getattr(self.model, "owns_loss", False))
        self.frozen_bn = freeze_for_stage2(self, config)  # finetune.train_only; BN kept in eval
        self.last_val: dict[str, Any] | None = None
        self.rank_checksums: list[list[float]] | None = None
        self.progress_loss: torch.Tensor | None = None  # last step's loss, for the progress bar
        # The non-finite policy (train/divergence.py): device-side flags, read at sync points.
        self.nonfinite = NonFiniteTracker()
        self.last_clean_check = 0  # the step of the last check that found everything finite
        self.skipped_steps, self.skipped_parts = 0, []  # on_nonfinite: skip
        self.buffer_snapshot: list | None = None

    # ----------------------------------------------------------------- training
    def training_step(self, batch, batch_idx):
        """One step with no host-device sync: losses and statistics stay on the device.

        The logged values are handed to Lightning only on the steps its loggers write (every
        ``trainer.log_every``), as tensors; they are read back (one sync) only there.
        """
        images, targets = batch
        if hasattr(self.criterion, "set_step"):  # losses with a schedule (LDAM's deferred weights)
            self.criterion.set_step(self.global_step)
        # data.mixup_alpha: a mixed batch whose loss weighs both label sets (else unchanged).
        images, mixed = mixup_batch(
            images, targets, self.config["data"].get("mixup_alpha"),
            seed=int(self.config["seed"]), step=self.global_step, rank=self.global_rank,
        )  # fmt: skip
        if self.owns_loss:  # a query-based model: its own loss, its matched queries' labels
            out = self.model.forward_train(images, targets)
            loss_main, reg_labels = out.loss, out.feature_labels
        else:
            out = self.logits_model().forward_train(images)
            loss_main, reg_labels = mixed.loss(self.criterion, out.logits), mixed.dominant
        loss = loss_main
        logs = {"train/loss_main": loss_main.detach()}
        if not self.owns_loss and out.aux_logits is not None and self.model.aux_loss_weight > 0:
            loss_aux_head = mixed.loss(self.criterion, out.aux_logits)
            loss = loss + self.model.aux_loss_weight * loss_aux_head
            logs["train/loss_aux_head"] = loss_aux_head.detach()
        parts = {
            "model_loss" if self.owns_loss else self.config["loss"]["name"]: loss_main,
            "aux_head": logs.get("train/loss_aux_head"),
        }
        if self.regularizer is not None:
            reg = self._regularize(out.features, reg_labels, parts)
            if reg is not None:
                loss = loss + reg
                logs["train/loss_reg"] = reg.detach()
                for key, value in self.regularizer.last_stats_tensors.items():
                    logs[f"reg/{key}"] = value.float()
                    if key.startswith("loss_"):
                        parts[f"reg.{key}"] = value
        # No sync: the flags are read at logged, checkpoint and validation steps (callbacks.py).
        step = self.global_step + 1  # steps count from 1, as checkpoints and the progress bar do
        self.nonfinite.update({k: v for k, v in parts.items() if v is not None}, step)
        logs["train/loss"] = loss.detach()
        self.progress_loss = logs["train/loss"]
        if self.is_log_step():  # anything logged stays in Lightning's results and is read back
            self.log_dict(logs, on_step=True, on_epoch=False, prog_bar=False)
        return loss

    def _regularize(self, features, labels, parts: dict) -> torch.Tensor | None:
        """The regularizer's loss; its input checks (first ``regularizer.validate`` steps) that
        fail on non-finite features report a divergence, not their API wording (skip mode: the
        step goes on without it and is dropped before the optimizer step)."""
        try:
            return self.regularizer(features, labels, self.model.classifier)
        except ValueError:
            if bool(torch.isfinite(features.detach()).all()):
                raise  # a real input error, not a divergence
        parts["reg.input_features"] = features.detach().sum()  # non-finite: flags the step
        if self.config["trainer"]["on_nonfinite"] == "skip":
            return None
        step = self.global_step + 1
        self.nonfinite.update({k: v for k, v in parts.items() if v is not None}, step)
        first, bad = self.nonfinite.read()  # this step's parts and what came before it
        raise TrainingDiverged(
            step=first, checked_at=step, last_clean=self.last_clean_check, parts=bad,
            skipped=self.skipped_steps,
        )  # fmt: skip

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.nonfinite.begin_step()
        if self.config["trainer"]["on_nonfinite"] == "skip":
            self.buffer_snapshot = snapshot_buffers(self)

    def on_before_optimizer_step(self, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        guard_step(self, self.trainer, params)

    def logits_model(self) -> torch.nn.Module:
        """``self.model``, or with ``finetune.calibration`` a
        :class:`~semantic_anchors.calibration.CalibratedModel` of it (built once and kept outside
        the module tree, so its parameters are not registered twice): what training and
        evaluation take their logits from."""
        if self.calibration is None:
            return self.model
        cached = self.__dict__.get("_calibrated_model")
        if (
            cached is None
            or cached.model is not self.model
            or cached.calibration is not self.calibration
        ):
            from semantic_anchors.calibration import CalibratedModel

            cached = CalibratedModel(self.model, self.calibration)
            self.__dict__["_calibrated_model"] = cached  # not nn.Module.__setattr__: no submodule
        return cached

    def train(self, mode: bool = True):
        """``nn.Module.train``; the BN layers that ``finetune`` freezes stay in eval mode."""
        super().train(mode)
        for name in getattr(self, "frozen_bn", ()) if mode else ():
            self.get_submodule(name).train(False)
        return self

    def on_train_start(self) -> None:
        if self.frozen_bn:  # Lightning does not call train() itself when fit starts
            self.train()
        apply_config_lr(self)

    def is_log_step(self, step: int | None = None) -> bool:
        """Whether training step ``step`` (default: the current one) is one Lightning's loggers
        write (``log_every``); the progress bar asks the same question after the step."""
        every = max(1, int(self.config["trainer"]["log_every"]))
        return ((self.global_step if step is None else step) + 1) % every == 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.config["eval"]
        return predict_logits(
            self.inference_model(), images, cfg["mode"], num_classes=self.num_classes,
            crop_size=cfg["crop_size"], stride=cfg["stride"],
        )  # fmt: skip

    def inference_model(self) -> torch.nn.Module:
        """``self.model``, or with ``eval.anchor_fusion != 0`` an
        :class:`~semantic_anchors.anchor_inference.AnchorFusedModel` of it and SAR's semantic
        anchors (built per call from the current anchors; it is not a submodule).

        During training-time validation, before SAR's gate has opened for every class, the plain
        model is used: an error there would cost the steps trained since the last checkpoint.

        Raises:
            ValueError: anchor fusion without SAR, or (outside training) classes whose semantic
                anchor was never initialized.
        """
        from semantic_anchors.anchor_inference import AnchorFusedModel
        from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

        cfg = self.config["eval"]
        beta = cfg.get("anchor_fusion", 0.0)
        if not beta:
            return self.logits_model()  # the calibrated model with finetune.calibration
        sar = self.regularizer
        if not isinstance(sar, SemanticAnchorRegularizer):
            raise ValueError(
                f"eval.anchor_fusion={beta} uses SAR's semantic anchors, but this run's "
                f"regularizer is {self.config['regularizer']['name']!r}; set eval.anchor_fusion=0 "
                "or train with regularizer.name=sar"
            )
        # Validation during fit, or the one that closes it (a trainer that has trained, run.py).
        trainer = self._trainer
        training = trainer is not None and (trainer.state.fn == "fit" or trainer.global_step > 0)
        if training and not bool(sar.initialized.all()):
            return self.model
        return AnchorFusedModel(
            self.model, sar, beta=beta, metric=cfg.get("anchor_metric", "l2"),
            temperature=cfg.get("anchor_temperature"),
            class_names=self.data_info.get("class_names"),
        )  # fmt: skip

    # ----------------------------------------------------------------- validation
    def validation_step(self, batch, batch_idx):
        images, targets = batch
        logits = self(images)
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit" and not bool(logits.isfinite().all()):
            # Finite weights that overflow in eval mode (the metric would refuse them anyway).
            raise TrainingDiverged(
                step=self.global_step, checked_at=self.global_step,
                last_clean=self.last_clean_check, parts=["validation logits"],
                skipped=self.skipped_steps,
                reason="the weights are finite but the model overflows in evaluation mode",
            )  # fmt: skip
        if targets.dim() == logits.dim():  # (B, 2, H, W): semantic labels, instance ids
            targets = targets[:, 0]
        self.val_metrics.update(logits, targets)

    def on_validation_epoch_end(self) -> None:
        result = self.val_metrics.compute()
        self.val_metrics.reset()
        scalars = {k: float(v) for k, v in result.items() if v.dim() == 0}
        self.log_dict({f"val/{k}": v for k, v in scalars.items()}, sync_dist=False)
        per_class_key = "IoU" if self.task == "segmentation" else "Acc"
        self.last_val = {
            "step": int(self.global_step),
            **{k: (None if math.isnan(v) else v) for k, v in scalars.items()},
            per_class_key: [None if math.isnan(v) else float(v) for v in result[per_class_key]],
        }

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        return build_optimizer(self)

    def on_train_end(self) -> None:
        """Under DDP, check that every rank ends with the same parameters and buffers."""
        if self.trainer.world_size <= 1:
            return
        sums = torch.stack([t.detach().double().sum() for t in self.state_dict().values()])
        gathered = self.all_gather(sums.to(self.device))  # (world, n_tensors)
        self.rank_checksums = gathered.cpu().tolist()
        if not all(row == self.rank_checksums[0] for row in self.rank_checksums):
            raise RuntimeError("DDP ranks ended with different parameters or buffers")

    # ----------------------------------------------------------------- checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["semantic_anchors"] = {
            "config": self.config, "data_info": self.data_info, "rng": capture_rng(),
            "last_val": self.last_val, "skipped_steps": self.skipped_steps,
            "skipped_parts": self.skipped_parts,
        }  # fmt: skip
        checkpoint.pop("hyper_parameters", None)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("semantic_anchors", {})
        if "rng" in extra:
            restore_rng(extra["rng"])
        self.last_val = extra.get("last_val")
        self.skipped_steps = int(extra.get("skipped_steps", 0))
        self.skipped_parts = list(extra.get("skipped_parts", []))
        self.last_clean_check = int(checkpoint.get("global_step", 0))
