"""Large-message delivery benchmark (not a test): which cloud and image sizes arrive over DDS, and how often.

``python -m aqr_ros.tools.bench dds [--sizes-mb 5,10,20,30,50] [--count 20] [--hz 2] [--profile XML]``

A publisher (this process) sends best-effort PointCloud2 and Image messages of each size, with the node's
input QoS (best effort, depth 2), to a subscriber in a second process; the subscriber counts what arrives
intact. Run it with the Fast DDS profile to be judged (default: the shipped ``config/fastdds_large_data.xml``).
"""

from __future__ import annotations

import argparse
import array
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from aqr_ros.resources import share_path
from aqr_ros.tools.cli import make_parser

#: Bytes per point of the benchmark clouds (x, y, z, intensity as float32).
POINT_STEP = 16
#: Seconds the subscriber keeps listening after the last message is due.
LINGER_S = 3.0


def _qos():
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)


def _cloud(size_bytes: int):
    from sensor_msgs.msg import PointCloud2, PointField

    width = size_bytes // POINT_STEP
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(("x", "y", "z", "intensity"))]
    return PointCloud2(height=1, width=width, fields=fields, point_step=POINT_STEP, row_step=width * POINT_STEP,
                       is_dense=True, data=array.array("B", bytes(width * POINT_STEP)))


def _image(size_bytes: int):
    from sensor_msgs.msg import Image

    width = 3200
    height = max(1, size_bytes // (3 * width))
    return Image(height=height, width=width, encoding="bgr8", step=3 * width,
                 data=array.array("B", bytes(3 * width * height)))


def listen(seconds: float) -> int:
    """Subscriber side: count intact clouds and images per size (bytes) for ``seconds``, print JSON."""
    import rclpy
    from sensor_msgs.msg import Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node("aqr_bench_dds_listener")
    counts: dict[str, dict[int, int]] = {"cloud": {}, "image": {}}

    def on_cloud(msg: PointCloud2) -> None:
        if len(msg.data) == msg.row_step * msg.height:
            counts["cloud"][len(msg.data)] = counts["cloud"].get(len(msg.data), 0) + 1

    def on_image(msg: Image) -> None:
        if len(msg.data) == msg.step * msg.height:
            counts["image"][len(msg.data)] = counts["image"].get(len(msg.data), 0) + 1

    node.create_subscription(PointCloud2, "/aqr_bench_dds/cloud", on_cloud, _qos())
    node.create_subscription(Image, "/aqr_bench_dds/image", on_image, _qos())
    print("listening", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(counts), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``aqr_bench dds``."""
    parser = make_parser("aqr_bench dds", __doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="5,10,17,20,28,40,48,60", help="comma-separated message sizes (MB)")
    parser.add_argument("--count", type=int, default=20, help="messages per size and kind")
    parser.add_argument("--hz", type=float, default=2.0, help="publishing rate")
    parser.add_argument("--profile", default=None,
                        help="Fast DDS profile XML (default: the shipped config/fastdds_large_data.xml; "
                             "'none' for Fast DDS's defaults)")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "44")),
                        help="ROS domain of both processes ($ROS_DOMAIN_ID when set)")
    parser.add_argument("--listen", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.listen is not None:
        return listen(args.listen)

    sizes = [int(float(s) * 1e6) for s in args.sizes_mb.split(",")]
    profile = None if args.profile == "none" else args.profile or str(share_path("config", "fastdds_large_data.xml"))
    # The publisher (this process) and the subscriber (its child) use the same settings.
    os.environ.update(ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    duration = len(sizes) * 2 * args.count / args.hz + 2 * LINGER_S + 5.0
    child = subprocess.Popen([sys.executable, "-m", "aqr_ros.tools.bench_dds", "--listen", str(duration)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    child.stdout.readline()  # "listening"

    import rclpy
    from sensor_msgs.msg import Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node("aqr_bench_dds_publisher")
    pubs = {"cloud": node.create_publisher(PointCloud2, "/aqr_bench_dds/cloud", _qos()),
            "image": node.create_publisher(Image, "/aqr_bench_dds/image", _qos())}
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        time.sleep(0.1)
    time.sleep(1.0)
    print(f"DDS large-message benchmark: profile {profile or 'none (Fast DDS defaults)'}, best effort depth 2, "
          f"{args.count} messages per size at {args.hz:g} Hz")
    sent: dict[str, dict[int, int]] = {"cloud": {}, "image": {}}
    for size in sizes:
        for kind, build in (("cloud", _cloud), ("image", _image)):
            msg = build(size)
            for _ in range(args.count):
                pubs[kind].publish(msg)
                time.sleep(1.0 / args.hz)
            sent[kind][len(msg.data)] = args.count
    out, _ = child.communicate(timeout=duration + 30)
    node.destroy_node()
    rclpy.try_shutdown()
    counts = json.loads(out.splitlines()[-1])
    received = {kind: {int(size): n for size, n in by_size.items()} for kind, by_size in counts.items()}
    print(f"{'size MB':>8} {'clouds received':>16} {'images received':>16}")
    for size in sizes:
        row = []
        for kind in ("cloud", "image"):
            exact = min(sent[kind], key=lambda s: abs(s - size))
            row.append(f"{received[kind].get(exact, 0):>3} of {sent[kind][exact]:<3}")
        print(f"{size / 1e6:>8.1f} {row[0]:>16} {row[1]:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
