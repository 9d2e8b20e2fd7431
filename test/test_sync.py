"""Decisions of the LiDAR-triggered synchronizer (pure Python, no ROS)."""

import threading

import pytest

from aqr_ros.ros.sync import CameraStatus, LidarTriggeredSync, Push, SyncConfig

MS = 1_000_000


def make(num_cameras=3, **kw):
    kw.setdefault("offsets_ns", (0,) * num_cameras)
    return LidarTriggeredSync(SyncConfig(num_cameras=num_cameras, **kw))


def test_all_cameras_at_cloud_stamp_are_fused_and_released_immediately():
    sync = make(max_delay_ns=100 * MS)
    for cam in range(3):
        sync.add_image(cam, 1000 * MS, f"img{cam}")
    sync.add_cloud(1000 * MS, "cloud", received_ns=0)
    frame = sync.take(now_ns=0)
    assert frame is not None and frame.usable
    assert frame.cloud == "cloud" and frame.stamp_ns == 1000 * MS
    assert frame.images == ("img0", "img1", "img2")
    assert frame.status == (CameraStatus.FUSED,) * 3
    assert frame.dt_ns == (0, 0, 0)
    assert frame.camera_valid == (True, True, True)
    assert sync.take(now_ns=0) is None  # taken once


def test_waits_for_images_that_may_still_arrive_then_picks_closest():
    sync = make(num_cameras=2, wait_timeout_ns=50 * MS)
    sync.add_image(0, 900 * MS, "old0")
    sync.add_image(1, 1000 * MS, "new1")
    sync.add_cloud(1000 * MS, "c", received_ns=10 * MS)
    assert sync.take(now_ns=20 * MS) is None  # camera 0 has nothing at/after 1000 ms yet
    sync.add_image(0, 1001 * MS, "new0")
    frame = sync.take(now_ns=21 * MS)
    assert frame.images == ("new0", "new1")
    assert frame.dt_ns == (1 * MS, 0)


def test_timeout_masks_late_and_missing_cameras():
    sync = make(num_cameras=3, max_delay_ns=50 * MS, wait_timeout_ns=30 * MS)
    sync.add_image(0, 1000 * MS, "ok")
    sync.add_image(1, 800 * MS, "too_old")
    sync.add_cloud(1000 * MS, "c", received_ns=0)
    assert sync.take(now_ns=29 * MS) is None
    frame = sync.take(now_ns=30 * MS)
    assert frame.received_ns == 0
    assert frame.status == (CameraStatus.FUSED, CameraStatus.LATE, CameraStatus.MISSING)
    assert frame.images == ("ok", None, None)
    assert frame.image_stamps_ns == (1000 * MS, None, None)
    assert frame.dt_ns == (0, -200 * MS, None)
    assert frame.camera_valid == (True, False, False)
    assert frame.usable


def test_newer_image_past_tolerance_decides_without_waiting():
    sync = make(num_cameras=1, max_delay_ns=10 * MS, wait_timeout_ns=10**12)
    sync.add_image(0, 1100 * MS, "future")
    sync.add_cloud(1000 * MS, "c", received_ns=0)
    frame = sync.take(now_ns=0)
    assert frame.status == (CameraStatus.LATE,)
    assert frame.dt_ns == (100 * MS,)


def test_per_camera_offsets_shift_the_target():
    sync = make(num_cameras=2, max_delay_ns=5 * MS, offsets_ns=(0, 40 * MS), queue_size=3)
    for stamp in (1000, 1040):
        sync.add_image(0, stamp * MS, f"a{stamp}")
        sync.add_image(1, stamp * MS, f"b{stamp}")
    sync.add_cloud(1000 * MS, "c", received_ns=0)
    frame = sync.take(now_ns=0)
    assert frame.images == ("a1000", "b1040")
    assert frame.dt_ns == (0, 0)


def test_min_cameras_and_allow_missing_mark_frames_unusable():
    sync = make(num_cameras=2, min_cameras=2, wait_timeout_ns=0)
    sync.add_image(0, 1000 * MS, "a")
    sync.add_cloud(1000 * MS, "c", received_ns=0)
    assert sync.take(now_ns=0).usable is False
    strict = make(num_cameras=2, allow_missing=False, wait_timeout_ns=0)
    strict.add_image(0, 1000 * MS, "a")
    strict.add_cloud(1000 * MS, "c", received_ns=0)
    frame = strict.take(now_ns=0)
    assert frame.usable is False and frame.status[1] is CameraStatus.MISSING


def test_newest_cloud_replaces_unprocessed_one_and_counts_drop():
    sync = make(num_cameras=1, wait_timeout_ns=0)
    sync.add_cloud(1000 * MS, "c1", received_ns=0)
    sync.add_cloud(1100 * MS, "c2", received_ns=0)
    sync.add_cloud(1200 * MS, "c3", received_ns=0)
    assert sync.dropped == 2
    assert sync.take(now_ns=0).cloud == "c3"
    assert sync.take(now_ns=0) is None


def test_out_of_order_stamps_are_rejected_and_state_kept():
    sync = make(num_cameras=1, wait_timeout_ns=0)
    assert sync.add_cloud(1000 * MS, "c1", received_ns=0) is Push.ACCEPTED
    assert sync.add_cloud(900 * MS, "old", received_ns=0) is Push.OUT_OF_ORDER
    assert sync.add_cloud(1000 * MS, "dup", received_ns=0) is Push.OUT_OF_ORDER
    assert sync.add_image(0, 1000 * MS, "i1") is Push.ACCEPTED
    assert sync.add_image(0, 950 * MS, "i0") is Push.OUT_OF_ORDER
    frame = sync.take(now_ns=0)
    assert frame.cloud == "c1" and frame.images == ("i1",)
    assert sync.dropped == 0


def test_time_jump_back_resets_state_and_keeps_the_new_message():
    sync = make(num_cameras=1, wait_timeout_ns=0, reset_threshold_ns=1000 * MS)
    sync.add_image(0, 50_000 * MS, "late_image")
    sync.add_cloud(50_000 * MS, "before", received_ns=0)
    assert sync.add_cloud(1_000 * MS, "after", received_ns=0) is Push.RESET
    assert sync.resets == 1 and sync.dropped == 0  # the cleared cloud is not a drop
    frame = sync.take(now_ns=0)
    assert frame.cloud == "after" and frame.status == (CameraStatus.MISSING,)  # old image cleared
    assert sync.add_image(0, 1_000 * MS, "new") is Push.ACCEPTED  # camera buffer was cleared too
    assert sync.add_cloud(1_100 * MS, "next", received_ns=0) is Push.ACCEPTED


def test_image_jump_back_clears_only_that_camera():
    sync = make(num_cameras=2, wait_timeout_ns=0, reset_threshold_ns=1000 * MS)
    sync.add_image(0, 50_000 * MS, "a")
    sync.add_image(1, 50_000 * MS, "b")
    assert sync.add_image(0, 2_000 * MS, "a2") is Push.RESET
    sync.add_cloud(2_000 * MS, "c", received_ns=0)
    frame = sync.take(now_ns=0)
    assert frame.images == ("a2", None)
    assert frame.status[1] is CameraStatus.LATE


def test_wait_frame_wakes_on_new_message():
    sync = make(num_cameras=1, wait_timeout_ns=10**12)
    sync.add_cloud(1000 * MS, "c", received_ns=0)
    timer = threading.Timer(0.05, sync.add_image, args=(0, 1000 * MS, "img"))
    timer.start()
    frame = sync.wait_frame(lambda: 0, timeout_s=10.0)
    timer.join()
    assert frame is not None and frame.images == ("img",)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="offsets_ns"):
        SyncConfig(num_cameras=6, offsets_ns=(0, 0))
    with pytest.raises(ValueError, match="queue_size"):
        SyncConfig(queue_size=0)


def test_best_match_survives_newer_images_arriving_before_the_worker_takes_the_frame():
    # A 30 Hz camera keeps publishing while the worker is busy with the previous frame: the image that
    # matches the pending cloud must not be pushed out of the 2-deep buffer and replaced by a later one.
    sync = make(num_cameras=1, queue_size=2, max_delay_ns=100 * MS, wait_timeout_ns=50 * MS)
    sync.add_image(0, 967 * MS, "before")
    sync.add_image(0, 1000 * MS, "match")
    sync.add_cloud(1000 * MS, "c", received_ns=0)  # decided now, but the worker is busy
    sync.add_image(0, 1033 * MS, "later1")
    sync.add_image(0, 1067 * MS, "later2")
    frame = sync.take(now_ns=80 * MS)
    assert frame.images == ("match",)
    assert frame.image_stamps_ns == (1000 * MS,)
    assert frame.dt_ns == (0,)
    # The buffer itself stays bounded and the next cloud matches the newest images.
    sync.add_cloud(1067 * MS, "c2", received_ns=90 * MS)
    assert sync.take(now_ns=90 * MS).images == ("later2",)


def test_replaced_clouds_are_handed_to_the_next_frame_for_the_sweep_history():
    sync = make(num_cameras=1, wait_timeout_ns=0, keep_dropped=2)
    for k in range(4):  # the worker is busy: clouds 0, 1, 2 are replaced before it takes one
        sync.add_cloud((1000 + 50 * k) * MS, f"c{k}", received_ns=0)
    frame = sync.take(now_ns=0)
    assert frame.cloud == "c3" and sync.dropped == 3
    assert frame.earlier_clouds == ((1050 * MS, "c1"), (1100 * MS, "c2"))  # oldest first, at most 2
    sync.add_cloud(1200 * MS, "c4", received_ns=0)
    assert sync.take(now_ns=0).earlier_clouds == ()  # handed over once
    sync.add_cloud(1250 * MS, "c5", received_ns=0)
    sync.add_cloud(5000 * MS, "c6", received_ns=0)  # replaced c5
    sync.add_cloud(100 * MS, "c7", received_ns=0)  # bag loop: the history is forgotten with the reset
    assert sync.take(now_ns=0).earlier_clouds == ()


def test_no_history_is_kept_by_default():
    sync = make(num_cameras=1, wait_timeout_ns=0)
    sync.add_cloud(1000 * MS, "a", received_ns=0)
    sync.add_cloud(1050 * MS, "b", received_ns=0)
    assert sync.take(now_ns=0).earlier_clouds == ()
