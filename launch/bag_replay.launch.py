"""Replay a bag through the aqr_ros node with simulated time and rviz2.

    ros2 launch aqr_ros bag_replay.launch.py bag:=/path/to/bag checkpoint:=/path/to/aqr_cmt.pth

Starts ``aqr.launch.py`` with ``use_sim_time:=true`` (other arguments are passed through to it) and
``ros2 bag play --clock`` once the node reports the lifecycle state ``active``, i.e. after the model is loaded
and warmed up however long that takes (a fixed delay would be outrun by a slow load). With ``autostart:=false``
playback starts when the lifecycle manager activates the node.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, RegisterEventHandler
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.event_handlers import OnStateTransition

from aqr_ros.ros.launch_args import DEFAULT_CAMERAS, DEFAULT_IMAGE_SUFFIX, DEFAULT_LIDAR_TOPIC, TEMPLATE_FIXED_FRAME

PASSED_THROUGH = ("params_file", "checkpoint", "model_config", "device", "lidar_axes", "output_frame", "fixed_frame",
                  "namespace", "lidar_topic", "camera_namespaces", "image_suffix", "compressed", "log_level",
                  "fastdds_profile", "autostart", "rviz_fixed_frame")


def generate_launch_description() -> LaunchDescription:
    """The bag player (with /clock) plus the node and rviz2 on simulated time."""
    share = get_package_share_directory("aqr_ros")
    node_launch = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "aqr.launch.py")),
        launch_arguments={"use_sim_time": "true", "rviz": LaunchConfiguration("rviz"),
                          **{name: LaunchConfiguration(name) for name in PASSED_THROUGH}}.items(),
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", "--clock", "--rate", LaunchConfiguration("rate"), LaunchConfiguration("bag")],
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder or file to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("rviz", default_value="true", description="start rviz2"),
        DeclareLaunchArgument("rviz_fixed_frame", default_value=TEMPLATE_FIXED_FRAME,
                              description="rviz2's fixed frame (tf must link it to the cloud's frame)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "aqr.yaml")),
        DeclareLaunchArgument("checkpoint", default_value=""),
        DeclareLaunchArgument("model_config", default_value=""),
        DeclareLaunchArgument("device", default_value=""),
        DeclareLaunchArgument("lidar_axes", default_value=""),
        DeclareLaunchArgument("output_frame", default_value=""),
        DeclareLaunchArgument("fixed_frame", default_value=""),
        DeclareLaunchArgument("fastdds_profile", default_value=""),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("lidar_topic", default_value=DEFAULT_LIDAR_TOPIC),
        DeclareLaunchArgument("camera_namespaces", default_value=DEFAULT_CAMERAS),
        DeclareLaunchArgument("image_suffix", default_value=DEFAULT_IMAGE_SUFFIX),
        DeclareLaunchArgument("compressed", default_value=""),
        DeclareLaunchArgument("log_level", default_value="info"),
        DeclareLaunchArgument("autostart", default_value=""),
        # Registered before the node starts, so its first transition to active is seen.
        RegisterEventHandler(OnStateTransition(goal_state="active", entities=[play], handle_once=True)),
        node_launch,
    ])
