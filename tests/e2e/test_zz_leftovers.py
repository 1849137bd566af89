"""Runs last: every control plane the earlier modules started has been stopped with its module."""

from realk8s import cluster


def test_no_control_plane_process_left():
    assert cluster.leftover_processes() == []
    assert not cluster._LIVE
