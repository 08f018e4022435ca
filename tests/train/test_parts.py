"""The factory of a run's parts, tested without Lightning or a run folder."""

import pytest
import torch

from semantic_anchors.metrics import ClassificationMetrics, SegmentationMetrics
from semantic_anchors.models import create_model
from semantic_anchors.regularizers import SemanticAnchorRegularizer
from semantic_anchors.train.config import load_config
from semantic_anchors.train.module import AnchorModule
from semantic_anchors.train.parts import VALIDATE_STEPS, build_parts


def _info(task="segmentation", num_classes=5, ignore_index=255):
    return {
        "task": task, "num_classes": num_classes, "in_channels": 3,
        "class_names": [f"c{i}" for i in range(num_classes)],
        "groups": {"head": [0, 1], "body": [2, 3], "tail": [4]},
        "class_frequencies": [50, 20, 10, 5, 1][:num_classes], "ignore_index": ignore_index,
    }  # fmt: skip


def _config(recipe="synthlt-fcn-quick", *sets):
    return load_config(recipe, list(sets))


def test_segmentation_parts():
    parts = build_parts(_config("synthlt-fcn-quick", "regularizer.name=sar"), _info())
    assert isinstance(parts.regularizer, SemanticAnchorRegularizer)
    assert parts.regularizer.num_classes == 5
    assert parts.regularizer.feat_dim == parts.model.feat_dim
    assert parts.regularizer.dense and parts.model.dense
    # the dataset's ignore value and the first-steps-only input checks are the defaults
    assert parts.regularizer.ignore_index == 255
    assert parts.regularizer.validate == VALIDATE_STEPS
    assert isinstance(parts.val_metrics, SegmentationMetrics)
    assert parts.monitor == "val/mIoU"
    assert parts.calibration is None


def test_a_config_value_wins_over_the_defaults():
    config = _config("synthlt-fcn-quick", "regularizer.name=sar", "regularizer.validate=true")
    parts = build_parts(config, _info(ignore_index=-1))
    assert parts.regularizer.validate is True
    assert parts.regularizer.ignore_index == -1


def test_classification_parts():
    config = _config("fashion-lt-smallcnn-quick", "regularizer.name=sar")
    parts = build_parts(config, _info("classification"))
    assert not parts.model.dense and not parts.regularizer.dense
    assert isinstance(parts.val_metrics, ClassificationMetrics)
    assert parts.monitor == "val/top1"


def test_the_parts_are_built_in_the_module_s_order():
    """The same seed gives the module and the factory the same initial weights, and each part
    is the one its own builder makes from that seed in the documented order."""
    config = _config("synthlt-fcn-quick", "regularizer.name=sar")
    torch.manual_seed(0)
    parts = build_parts(config, _info())
    torch.manual_seed(0)
    module = AnchorModule(config, _info())
    for name, part in [("model", parts.model), ("regularizer", parts.regularizer)]:
        ours, theirs = part.state_dict(), getattr(module, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    torch.manual_seed(0)
    model = create_model("fcn_small", num_classes=5, in_channels=3)
    reg = SemanticAnchorRegularizer(5, model.feat_dim, dense=True, validate=VALIDATE_STEPS)
    expected, built = model.state_dict(), parts.model.state_dict()
    assert all(torch.equal(expected[k], built[k]) for k in expected)
    assert torch.equal(reg.anchors, parts.regularizer.anchors)


def test_a_model_of_the_other_task_is_refused():
    config = _config("fashion-lt-smallcnn-quick")
    with pytest.raises(ValueError, match="'small_cnn' is a classification model but dataset"):
        build_parts(config, _info("segmentation"))


def test_text_options_without_text_anchors_are_refused():
    config = _config("synthlt-fcn-quick", "regularizer.name=sar", "regularizer.text_prompt=a {}")
    with pytest.raises(ValueError, match="text_prompt only apply with regularizer.anchors=text"):
        build_parts(config, _info())


def test_a_batch_option_of_the_other_task_is_refused():
    config = _config("synthlt-fcn-quick", "data.mixup_alpha=0.2")
    with pytest.raises(ValueError, match="mixup_alpha=0.2 applies to classification only"):
        build_parts(config, _info())


def test_a_datamodule_describes_its_training_set_for_the_factory():
    from semantic_anchors.train.data import AnchorDataModule

    config = _config("synthlt-fcn-quick", "regularizer.name=sar")
    dm = AnchorDataModule(config["data"], int(config["seed"]))
    info = dm.info()
    assert info["num_classes"] == dm.train_set.num_classes == len(info["class_names"])
    assert info["class_frequencies"] == [float(v) for v in dm.train_set.class_frequencies]
    parts = build_parts(config, info)
    assert parts.regularizer.num_classes == info["num_classes"]


# ----------------------------------------------------------------- a model that owns its loss
def _query_config(*sets):
    pytest.importorskip("transformers")
    return _config("synthlt-fcn-quick", "model.name=mask2former_tiny", *sets)


def test_sar_on_a_query_model_sees_vectors_and_a_no_object_class():
    parts = build_parts(_query_config("regularizer.name=sar"), _info())
    assert parts.model.owns_loss
    assert not parts.regularizer.dense and parts.regularizer.no_object
    assert parts.regularizer.feat_dim == parts.model.feat_dim == 64
    assert parts.monitor == "val/mIoU"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["loss.name=focal"], "trains with its own loss"),
        (["regularizer.name=car"], "regularizer.name='car' is not supported on its queries"),
        (["eval.anchor_fusion=0.5", "regularizer.name=sar"], "anchor_fusion need per-pixel"),
    ],
)
def test_what_a_query_model_does_not_support_is_refused(sets, message):
    with pytest.raises(ValueError, match=message):
        build_parts(_query_config(*sets), _info())


def test_a_training_step_of_a_query_model_uses_its_loss_and_matched_queries():
    config = _query_config("regularizer.name=sar")
    torch.manual_seed(0)
    module = AnchorModule(config, _info())
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=g)
    targets = torch.zeros(2, 2, 64, 64, dtype=torch.long)
    targets[0, 0, :30], targets[0, 1, :30] = 2, 1
    targets[1, 0, 10:20], targets[1, 1, 10:20] = 4, 3
    loss = module.training_step((images, targets), 0)
    assert torch.isfinite(loss)
    assert module.regularizer.last_stats["loss_aux"] > 0  # SAR ran on the queries
    loss.backward()
    assert module.regularizer.embedding.linear[0].weight.grad is not None
    module.validation_step((images, targets), 0)  # (B, 2, H, W) targets: semantic channel
    assert module.val_metrics.compute()["mIoU"] >= 0
