"""Segmentation heads: FCN, DeepLabV3 ASPP, HRNet's resize-concat FCN and OCR."""

from .aspp import ASPPHead
from .base import DecodeHead
from .fcn import FCNHead
from .fcn_concat import ResizeConcatFCNHead
from .ocr import OCRHead

__all__ = ["ASPPHead", "DecodeHead", "FCNHead", "OCRHead", "ResizeConcatFCNHead"]
