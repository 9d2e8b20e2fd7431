"""Packaging of aqr_ros as an ament_python package (colcon build / pip install)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "aqr_ros"


def share(subdir: str, *patterns: str) -> tuple[str, list[str]]:
    """One data_files entry installing the files matching ``patterns`` into share/aqr_ros/subdir."""
    files = sorted(path for pattern in patterns for path in glob(pattern))
    return (f"share/{PACKAGE}/{subdir}".rstrip("/"), files)


# Everything aqr_ros reads at run time goes to share/aqr_ros, where aqr_ros.resources finds it in an install.
setup(
    name=PACKAGE,
    version="0.1.0",
    description="ROS 2 node for the AQR-modulated CMT LiDAR + 6-camera 3D detector (PyTorch)",
    license="Apache-2.0",
    maintainer="aqr_ros maintainers",
    maintainer_email="aqr_ros@example.com",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        share("", "package.xml"),
        share("launch", "launch/*.py"),
        share("config", "config/*.yaml", "config/*.rviz", "config/*.xml"),
        share("models", "models/*.yaml", "models/*.md"),
        share("models/weights", "models/weights/*.safetensors", "models/weights/*.json"),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "aqr_node = aqr_ros.ros.node:main",
            "aqr_demo = aqr_ros.tools.demo:main",
            "aqr_rig_publisher = aqr_ros.tools.rig_publisher:main",
            "aqr_bench = aqr_ros.tools.bench:main",
            "aqr_checkpoint = aqr_ros.tools.checkpoint:main",
            "aqr_train_rig = aqr_ros.tools.train_rig:main",
            "aqr_evaluate_rig = aqr_ros.tools.evaluate_rig:main",
            "aqr_doctor = aqr_ros.tools.doctor:main",
            "aqr_nuscenes_to_bag = aqr_ros.tools.nuscenes_to_bag:main",
            "aqr_nuscenes_export = aqr_ros.tools.nuscenes_export:main",
            "aqr_run_bag = aqr_ros.tools.run_bag:main",
            "aqr_evaluate_nuscenes = aqr_ros.tools.evaluate_nuscenes:main",
        ],
    },
)
