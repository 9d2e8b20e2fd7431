"""ROS-free frame processing: calibration, sweeps, preprocessing, boxes and weight-map images."""
