"""The Swin UperNets are sized as mmsegmentation's own ``upernet_swin`` configs (where installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

import semantic_anchors.models.hf  # noqa: E402, F401  (registers the models)
from semantic_anchors.models import create_model  # noqa: E402

# Our model -> the mmseg 1.x config of the same network (ADE20K, 150 classes).
MMSEG_SWIN_CONFIGS = [
    ("upernet_swin_t", "swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py"),
    ("upernet_swin_s", "swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py"),
    (
        "upernet_swin_b",
        "swin-base-patch4-window12-in22k-384x384-pre_upernet_8xb2-160k_ade20k-512x512.py",
    ),
    (
        "upernet_swin_l",
        "swin-large-patch4-window12-in22k-384x384-pre_upernet_8xb2-160k_ade20k-512x512.py",
    ),
]


def _mmseg_config(file_name: str):
    config_class = pytest.importorskip("mmengine.config").Config
    mmseg = pytest.importorskip("mmseg")
    path = Path(mmseg.__file__).parent / ".mim" / "configs" / "swin" / file_name
    if not path.is_file():
        pytest.skip(f"mmseg's configs are not installed ({path})")
    return config_class.fromfile(path).model


@pytest.mark.parametrize(
    "name, file_name", MMSEG_SWIN_CONFIGS, ids=[n for n, _ in MMSEG_SWIN_CONFIGS]
)
def test_swin_upernet_is_sized_as_the_mmseg_config(name: str, file_name: str) -> None:
    reference = _mmseg_config(file_name)
    with torch.device("meta"):  # the architecture only: nothing is allocated or computed
        model = create_model(name, num_classes=reference.decode_head.num_classes)
    config = model.hf_model.config
    backbone, swin = reference.backbone, config.backbone_config
    assert swin.embed_dim == backbone.embed_dims
    assert list(swin.depths) == list(backbone.depths)
    assert list(swin.num_heads) == list(backbone.num_heads)
    assert swin.window_size == backbone.window_size
    assert swin.patch_size == backbone.patch_size
    assert swin.mlp_ratio == backbone.mlp_ratio
    assert swin.drop_path_rate == backbone.drop_path_rate
    assert swin.use_absolute_embeddings == backbone.use_abs_pos_embed
    assert config.hidden_size == reference.decode_head.channels
    assert tuple(config.pool_scales) == tuple(reference.decode_head.pool_scales)
    assert config.auxiliary_channels == reference.auxiliary_head.channels
    hf_model = model.hf_model
    assert list(hf_model.backbone.channels) == list(reference.decode_head.in_channels)
    assert hf_model.auxiliary_head.in_channels == reference.auxiliary_head.in_channels
    assert config.auxiliary_num_convs == reference.auxiliary_head.num_convs
    assert config.auxiliary_concat_input == reference.auxiliary_head.concat_input
    assert config.auxiliary_loss_weight == reference.auxiliary_head.loss_decode.loss_weight
    assert model.num_classes == reference.decode_head.num_classes
