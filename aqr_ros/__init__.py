"""aqr_ros: the AQR-modulated CMT LiDAR + 6-camera 3D detector as a ROS 2 node."""
