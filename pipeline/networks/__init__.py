"""Networks: the custom U-Net family, the FCN baseline and the Attention U-Net, 2D and 3D."""
from pipeline.networks.attention import GridAttentionGate
from pipeline.networks.attention_unet import AttentionUNet
from pipeline.networks.fcn import FCN
from pipeline.networks.unet import PRESETS, UNet, preset_depth

__all__ = ["AttentionUNet", "FCN", "GridAttentionGate", "PRESETS", "UNet", "preset_depth"]
