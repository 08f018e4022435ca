"""Segmentation heads: FCN and DeepLabV3 ASPP, on a shared ``DecodeHead`` base."""

from .aspp import ASPPHead
from .base import DecodeHead
from .fcn import FCNHead

__all__ = ["ASPPHead", "DecodeHead", "FCNHead"]
