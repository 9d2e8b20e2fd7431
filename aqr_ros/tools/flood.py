"""Input flood for the node benchmark: the rig's calibration with clouds and images at chosen rates.

Messages are built once (random points and images of the rig's sizes) and republished with live stamps,
so the publisher costs little beyond DDS itself; what it really sent is counted per stream.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from aqr_ros.ros.to_msg import (camera_info_msg, image_from_array, pointcloud2_from_structured, stamp_from_seconds,
                                transform_stamped)
from aqr_ros.tools.synthetic_rig import BASE_FRAME, CAMERA_NAMES, LIDAR_FRAME, ODOM_FRAME, Rig

#: Points per flood cloud (a 32-beam LiDAR's sweep).
CLOUD_POINTS = 34_000


class FloodPublisher(Node):
    """Publishes the rig's inputs on the topics ``processes.node_arguments`` remaps the node to."""

    def __init__(self, context, image_scale: float = 1.0, seed: int = 0) -> None:
        super().__init__("aqr_bench_flood", context=context)
        from tf2_msgs.msg import TFMessage

        self._tf_type = TFMessage
        self.rig = Rig.nuscenes_like()
        rng = np.random.default_rng(seed)
        dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
        points = np.zeros(CLOUD_POINTS, dtype=dtype)
        for name, lo, hi in (("x", -50, 50), ("y", -50, 50), ("z", -2, 2), ("intensity", 0, 100)):
            points[name] = rng.uniform(lo, hi, CLOUD_POINTS)
        self._cloud = pointcloud2_from_structured(points, LIDAR_FRAME, stamp_from_seconds(0.0))
        self._infos: list[CameraInfo] = []
        self._images: list[Image] = []
        for i, name in enumerate(CAMERA_NAMES):
            info = self.rig.camera_info(i)
            K = info.K.copy()
            K[:2] *= image_scale
            w, h = int(info.width * image_scale), int(info.height * image_scale)
            self._infos.append(camera_info_msg(K, w, h, info.frame_id, stamp_from_seconds(0.0)))
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            self._images.append(image_from_array(pixels, "bgr8", info.frame_id, stamp_from_seconds(0.0)))
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.cloud_pub = self.create_publisher(PointCloud2, "/lidar_top/points", qos)
        self.image_pubs = [self.create_publisher(Image, f"/{c}/image_raw", qos) for c in CAMERA_NAMES]
        self.info_pubs = [self.create_publisher(CameraInfo, f"/{c}/camera_info", qos) for c in CAMERA_NAMES]
        self.tf_pub = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        static = self.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        static.publish(TFMessage(transforms=[transform_stamped(T, parent, child, stamp_from_seconds(0.0))
                                             for parent, child, T in self.rig.static_transforms()]))
        #: Messages sent per stream ("cloud", "images" counts each camera's image).
        self.sent = {"cloud": 0, "images": 0}

    def publish_cloud(self) -> None:
        """The cloud and odom → base_link, stamped now."""
        stamp = stamp_from_seconds(time.time())
        self.tf_pub.publish(self._tf_type(transforms=[transform_stamped(np.eye(4), ODOM_FRAME, BASE_FRAME, stamp)]))
        self._cloud.header.stamp = stamp
        self.cloud_pub.publish(self._cloud)
        self.sent["cloud"] += 1

    def publish_images(self) -> None:
        """Every camera's camera_info and image, stamped now."""
        stamp = stamp_from_seconds(time.time())
        for info, image, info_pub, image_pub in zip(self._infos, self._images, self.info_pubs, self.image_pubs):
            info.header.stamp = image.header.stamp = stamp
            info_pub.publish(info)
            image_pub.publish(image)
        self.sent["images"] += len(self._images)

    def run(self, cloud_hz: float, camera_hz: float, seconds: float, images_first_s: float = 0.02) -> None:
        """Publish clouds at ``cloud_hz`` and all cameras at ``camera_hz`` for ``seconds`` (two threads).

        With equal rates the images go ``images_first_s`` before each cloud, as a synchronized rig does.
        """
        stop = threading.Event()

        def loop(hz: float, publish, offset: float) -> None:
            next_t = time.monotonic() + offset
            while not stop.is_set():
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                publish()
                next_t = max(next_t + 1.0 / hz, time.monotonic())

        threads = [threading.Thread(target=loop, args=(camera_hz, self.publish_images, 0.0), daemon=True),
                   threading.Thread(target=loop, args=(cloud_hz, self.publish_cloud, images_first_s), daemon=True)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
