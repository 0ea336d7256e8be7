"""Test-time augmentation; lives in :mod:`liteunet.inference.tta`, importable here as before."""

from .inference.tta import TTA_MODES, TestTimeAugmentation, dihedral_transform, settings_for_mode, tta_average

__all__ = ["TTA_MODES", "TestTimeAugmentation", "dihedral_transform", "settings_for_mode", "tta_average"]
