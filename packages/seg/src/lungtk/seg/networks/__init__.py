"""The segmentation networks of the seed papers, as configurations of nn-blocks' U-Net."""

from lungtk.seg.networks.dilated_unet import DilatedUNet
from lungtk.seg.networks.resunet import ResUNet
from lungtk.seg.networks.unet3d_res import UNet3DRes
from lungtk.seg.networks.unet25d import UNet25D

__all__ = ["DilatedUNet", "ResUNet", "UNet3DRes", "UNet25D"]
