"""Session fixture ``rig_nuscenes_bag``: the first scene of the rig's nuScenes export (``rig_nuscenes``) converted
by aqr_nuscenes_to_bag into an MCAP bag, with the export it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class RigNuScenesBag:
    """A converted scene: the export (:class:`aqr_ros.tools.nuscenes_export.RigExport`), the scene's name, the bag
    folder and the converter's report."""

    export: Any
    scene: str
    bag: Path
    report: Any

    @property
    def dataroot(self) -> Path:
        """The exported dataset's root."""
        return Path(self.export.dataroot)

    @property
    def version(self) -> str:
        """The exported dataset's version (table folder)."""
        return self.export.version


@pytest.fixture(scope="session")
def rig_nuscenes_bag(rig_nuscenes, tmp_path_factory: pytest.TempPathFactory) -> RigNuScenesBag:
    """The first exported scene as a bag (``/lidar_top/points``, ``/cam_*/image_raw/compressed``, tf, ground truth)."""
    from aqr_ros.tools.nuscenes_tables import NuScenesTables
    from aqr_ros.tools.nuscenes_to_bag import convert_scene

    scene = rig_nuscenes.scenes[0]
    bag = tmp_path_factory.mktemp("rig_nuscenes_bag") / scene
    report = convert_scene(NuScenesTables(rig_nuscenes.dataroot, rig_nuscenes.version), scene, bag, progress=False)
    assert not report.error and not report.missing, report
    return RigNuScenesBag(rig_nuscenes, scene, bag, report)
