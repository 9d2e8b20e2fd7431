"""The rclpy layer: message conversion, synchronization, calibration from tf, the node and its publishers."""
