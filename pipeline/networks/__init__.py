"""Networks: the custom U-Net family, the FCN baseline and the Attention U-Net, 2D and 3D."""
from pipeline.networks.attention import GridAttentionGate
from pipeline.networks.attention_unet import AttentionUNet
from pipeline.networks.blocks import DEFAULT_ACT, DEFAULT_NORM
from pipeline.networks.fcn import FCN
from pipeline.networks.unet import PRESETS, UNet, preset_depth

__all__ = [
    "AttentionUNet",
    "DEFAULT_ACT",
    "DEFAULT_NORM",
    "FCN",
    "GridAttentionGate",
    "PRESETS",
    "UNet",
    "preset_depth",
]
