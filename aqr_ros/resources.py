"""Where aqr_ros's shipped data lives: model configs and weights (``models/``), parameter files, the Fast DDS
profile and the rviz layout (``config/``), the launch files (``launch/``).

From a source checkout that is the checkout itself; from an install it is ``<prefix>/share/aqr_ros`` (what
setup.py's ``data_files`` install). No ROS import: the model layer uses this module too, so
``ament_index_python`` is only tried, lazily, as the last resort.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "aqr_ros"
#: The folder the running aqr_ros package is imported from: a checkout's root, or an install's site-packages.
IMPORT_ROOT = Path(__file__).resolve().parents[1]


class ResourceError(FileNotFoundError):
    """A shipped file, or the folder holding them, cannot be found; the message says where it looked."""


def source_root() -> Path | None:
    """The source checkout aqr_ros is imported from (it holds package.xml and setup.py), or None when installed."""
    if (IMPORT_ROOT / "package.xml").is_file() and (IMPORT_ROOT / "setup.py").is_file():
        return IMPORT_ROOT
    return None


def _locate() -> tuple[Path, str]:
    """(the data folder, how it was found): the checkout, else share/aqr_ros of the prefix aqr_ros is installed
    in (found walking up from site-packages), else the ament index; ResourceError naming all three otherwise."""
    root = source_root()
    if root is not None:
        return root, "the source checkout"
    for prefix in IMPORT_ROOT.parents:
        share = prefix / "share" / PACKAGE
        if (share / "package.xml").is_file():
            return share, "the share folder of the install"
    looked = [f"a source checkout at {IMPORT_ROOT} (no package.xml and setup.py)",
              f"share/{PACKAGE}/package.xml in the folders above it"]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        looked.append("the ament index (ament_index_python is not installed)")
    else:
        try:
            return Path(get_package_share_directory(PACKAGE)), "the ament index"
        except PackageNotFoundError:
            looked.append(f"the ament index (AMENT_PREFIX_PATH={os.environ.get('AMENT_PREFIX_PATH', '')!r})")
    raise ResourceError(f"cannot find the data of {PACKAGE}; looked for " + "; ".join(looked))


def share_dir() -> Path:
    """The folder holding aqr_ros's data (with ``models/``, ``config/``, ``launch/``); see :func:`_locate`."""
    return _locate()[0]


def share_path(*parts: str) -> Path:
    """An existing shipped file or folder, e.g. ``share_path('models', 'aqr_cmt_rig_small.yaml')``; ResourceError
    naming the full path and the data folder's origin when it is missing."""
    root, origin = _locate()
    path = root.joinpath(*parts)
    if not path.exists():
        raise ResourceError(f"{PACKAGE} data not found: {path} (data folder {root}: {origin})")
    return path
