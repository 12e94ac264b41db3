"""The asymmetric view pair of MoCo v3 / BYOL.

View 1: random resized crop (scale 0.08-1), colour jitter 0.4/0.4/0.2/0.1 with p=0.8,
greyscale p=0.2, Gaussian blur p=1.0, horizontal flip. View 2: the same with blur p=0.1
and solarize p=0.2. For temporal and spatial pairs view 1 is made from image A and view 2
from image B; for self pairs both from the same image.

Two settings ease the pair for short runs (``PretrainConfig.crop_min`` and
``photometric``): the smallest crop's share of the image (MoCo v3's ``--crop-min``,
0.08), and a factor on the probabilities of colour jitter, greyscale, blur and solarize
(1: MoCo v3's; 0: none, the flip and the crop only). A temporal or spatial pair already
differs in light, season and weather; measured on the synthetic city, the full photometric
set on top of that kept a small ViT's temporal loss at chance for hundreds of CPU steps.
"""

from __future__ import annotations

from torchvision import transforms as T

from .encoders import IMAGENET_MEAN, IMAGENET_STD


def view_transforms(
    size: int = 224,
    *,
    crop_min: float = 0.08,
    photometric: float = 1.0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
):
    """The two view transforms (PIL image -> normalised float tensor)."""
    kernel = max(3, (size // 10) | 1)  # odd, about 10% of the image, as BYOL's 23 px at 224

    def build(blur_p: float, solarize_p: float):
        return T.Compose(
            [
                T.RandomResizedCrop(
                    size, scale=(crop_min, 1.0), interpolation=T.InterpolationMode.BICUBIC
                ),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8 * photometric),
                T.RandomGrayscale(p=0.2 * photometric),
                T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_p * photometric),
                T.RandomSolarize(threshold=128, p=solarize_p * photometric),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        )

    return build(1.0, 0.0), build(0.1, 0.2)


def eval_transform(size: int = 224, *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Resize (bicubic, shorter side) and centre crop, ImageNet normalisation: for embedding."""
    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
