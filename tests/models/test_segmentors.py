"""The model contract for every registered segmentor (and a few variants)."""

from __future__ import annotations

import pytest

from tests._helpers.contract import ModelContractTests


class SegmentorTests(ModelContractTests):
    dense = True
    output_stride = 8
    has_aux = True


class TestFCNSmall(SegmentorTests):
    model_name = "fcn_small"
    feat_dim = 64
    has_aux = False


class TestFCNSmallAux(SegmentorTests):
    model_name = "fcn_small"
    model_kwargs = {"aux_head": True, "in_channels": 1}
    input_shape = (2, 1, 56, 48)
    feat_dim = 64


class TestFCNSmallStride4(SegmentorTests):
    model_name = "fcn_small"
    model_kwargs = {"output_stride": 4}
    input_shape = (2, 3, 32, 32)
    feat_dim = 64
    output_stride = 4
    has_aux = False


class TestFCNR18(SegmentorTests):
    model_name = "fcn_r18_d8"
    feat_dim = 128


class TestDeepLabV3R18(SegmentorTests):
    model_name = "deeplabv3_r18_d8"
    feat_dim = 128


class TestDeepLabV3R18Stride16(SegmentorTests):
    model_name = "deeplabv3_r18_d8"
    model_kwargs = {"output_stride": 16, "aux_head": False, "deep_stem": False}
    feat_dim = 128
    output_stride = 16
    has_aux = False


@pytest.mark.slow
class TestFCNR50(SegmentorTests):
    model_name = "fcn_r50_d8"
    feat_dim = 512


@pytest.mark.slow
class TestDeepLabV3R50(SegmentorTests):
    model_name = "deeplabv3_r50_d8"
    feat_dim = 512


@pytest.mark.slow
class TestFCNR101(SegmentorTests):
    model_name = "fcn_r101_d8"
    input_shape = (2, 3, 32, 32)
    feat_dim = 512


@pytest.mark.slow
class TestDeepLabV3R101(SegmentorTests):
    model_name = "deeplabv3_r101_d8"
    input_shape = (2, 3, 32, 32)
    feat_dim = 512
