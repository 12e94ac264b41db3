"""The training and inference engine: the only part of urbanvis that imports torch.

MoCo v3 as the paper's authors ran it (design section 6): ViT backbones (:mod:`.encoders`),
projector and predictor heads (:mod:`.heads`), the symmetric contrastive loss
(:mod:`.loss`), the momentum model (:mod:`.moco`), schedules (:mod:`.schedules`), the
asymmetric view pair (:mod:`.transforms`, on the device :mod:`.gpu_views`), pair datasets
(:mod:`.data`) and the training loop with checkpoints and DDP (:mod:`.pretrain`). Embedding
a study's captures is :mod:`.inference` (the vectors it writes are :mod:`urbanvis.vectors`'),
and both share the image decoder (:mod:`.decode`), the device and process-group set-up
(:mod:`.distributed`) and the ``compile`` setting (:mod:`.compiling`).
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    from .._errors import MissingDependencyError

    raise MissingDependencyError(
        "the engine needs torch, torchvision and timm; install them with "
        "pip install 'urbanvis[engine]'"
    ) from exc

from .encoders import create_encoder, encoder_info, list_encoders, load_encoder

__all__ = ["create_encoder", "encoder_info", "list_encoders", "load_encoder"]
