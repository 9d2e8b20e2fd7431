"""Launch the aqr_ros detector node (and optionally rviz2) on a vehicle or with a bag.

    ros2 launch aqr_ros aqr.launch.py checkpoint:=/path/to/aqr_cmt.safetensors device:=cuda rviz:=true

The node is a lifecycle node: by default it configures and activates itself (``autostart``); with
``autostart:=false`` it waits unconfigured for a lifecycle manager (``ros2 lifecycle set /aqr_node configure``).

Arguments override the parameter file only when given (``aqr_ros.ros.launch_args``). No DDS profile is forced:
``fastdds_profile:=<xml>`` opts in to one (the shipped ``config/fastdds_large_data.xml`` is loopback only).

Every input is remapped from the node's ``~/input/...`` names: the LiDAR from ``lidar_topic``, camera i from
``<camera_namespaces[i]>/<image_suffix>`` and ``<camera_namespaces[i]>/camera_info`` (image_pipeline layout).
With ``rviz:=true``, rviz2 gets ``config/aqr.rviz`` rewritten (into a temporary file) for the node's ``namespace``,
the ``lidar_topic`` and ``rviz_fixed_frame``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node

from aqr_ros.ros.launch_args import (CHOICES, DEFAULT_CAMERAS, DEFAULT_IMAGE_SUFFIX, DEFAULT_LIDAR_TOPIC, NODE_NAME,
                                     PARAMETER_ARGUMENTS, TEMPLATE_FIXED_FRAME, camera_remaps, compressed_images,
                                     node_overrides, node_path, write_rviz_config)



def _share(*parts: str) -> str:
    return os.path.join(get_package_share_directory("aqr_ros"), *parts)


def _node(context: LaunchContext) -> list[LifecycleNode]:
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    given = {name: value(name) for name in (*PARAMETER_ARGUMENTS, "use_sim_time")}
    compressed = compressed_images(given, value("params_file"))
    remaps = [("~/input/pointcloud", value("lidar_topic"))]
    remaps += camera_remaps(value("camera_namespaces"), value("image_suffix"), compressed)
    return [LifecycleNode(
        package="aqr_ros", executable="aqr_node", name=NODE_NAME, namespace=value("namespace"),
        parameters=[value("params_file"), node_overrides(given)], remappings=remaps, output="screen",
        ros_arguments=["--log-level", value("log_level")],
    )]


def _rviz(context: LaunchContext) -> list[Node]:
    """rviz2 with the shipped layout rewritten for this node's namespace, the LiDAR topic and the fixed frame."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    layout = write_rviz_config(_share("config", "aqr.rviz"), node_path(value("namespace")),
                               value("rviz_fixed_frame"), value("lidar_topic"))
    return [Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", str(layout)],
                 parameters=[{"use_sim_time": value("use_sim_time") == "true"}], output="log")]


def generate_launch_description() -> LaunchDescription:
    """Arguments, the Fast DDS large-data profile, the node and (optionally) rviz2."""
    args = [
        DeclareLaunchArgument("params_file", default_value=_share("config", "aqr.yaml"),
                              description="node parameter file; the arguments below override it only when given"),
        DeclareLaunchArgument("checkpoint", default_value="", description="checkpoint path (empty: from params_file)"),
        DeclareLaunchArgument("model_config", default_value="",
                              description="model config name or YAML path (empty: the checkpoint's own / params)"),
        DeclareLaunchArgument("device", default_value="", description="auto | cpu | cuda | cuda:N (empty: params)"),
        DeclareLaunchArgument("lidar_axes", default_value="", choices=CHOICES["lidar_axes"],
                              description="axes of the cloud's frame (empty: params)"),
        DeclareLaunchArgument("output_frame", default_value="", description="frame of the detections (empty: params)"),
        DeclareLaunchArgument("fixed_frame", default_value="", description="tf fixed frame (empty: params)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("lidar_topic", default_value=DEFAULT_LIDAR_TOPIC, description="PointCloud2 input"),
        DeclareLaunchArgument("camera_namespaces", default_value=DEFAULT_CAMERAS,
                              description="comma-separated camera namespaces in model view order"),
        DeclareLaunchArgument("image_suffix", default_value=DEFAULT_IMAGE_SUFFIX, description="image topic in each namespace"),
        DeclareLaunchArgument("compressed", default_value="", choices=CHOICES["compressed"],
                              description="subscribe to .../compressed (empty: params)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=CHOICES["use_sim_time"],
                              description="use /clock (bag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", choices=CHOICES["rviz"],
                              description="start rviz2 with config/aqr.rviz, rewritten for this node's namespace"),
        DeclareLaunchArgument("rviz_fixed_frame", default_value=TEMPLATE_FIXED_FRAME,
                              description="rviz2's fixed frame (tf must link it to the cloud's frame), e.g. "
                                          "your LiDAR's frame, base_link or odom"),
        DeclareLaunchArgument("log_level", default_value="info", choices=CHOICES["log_level"],
                              description="node log level"),
        DeclareLaunchArgument("autostart", default_value="", choices=CHOICES["autostart"],
                              description="configure and activate at start-up; false waits for a lifecycle "
                                          "manager (empty: params)"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="Fast DDS profile XML to load (opt-in, e.g. the shipped "
                                          "config/fastdds_large_data.xml, loopback only); empty: the middleware "
                                          "settings of the environment stand"),
    ]
    return LaunchDescription([
        *args,
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile"),
                               condition=IfCondition(PythonExpression(["'", LaunchConfiguration("fastdds_profile"),
                                                                      "' != ''"]))),
        OpaqueFunction(function=_node),
        OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
