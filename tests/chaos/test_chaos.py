"""Never lose work: deciders and workers as separate processes on one engine, a mixed workload,
and SIGKILLs, pauses, dropped connections, clock jumps and a full disk thrown at it at random.
Afterwards every history is read and every promise checked (`checker.py`); the summary names the
seed that replays the storm."""

from __future__ import annotations

import subprocess

import pytest

from tests.chaos import checker
from tests.chaos.driver import Disk, Driver, Size

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

TIMEOUT = 150.0
"""Seconds a CI-sized run may take before the executions still open are reported as stuck."""


def run_and_check(driver: Driver, name: str, chaos_report, db=None, extra=None) -> None:
    try:
        wall = driver.run(TIMEOUT * driver.size.scale)
        report = checker.check_engine(driver.engine, driver.signals_sent, driver.started)
    finally:
        driver.stop()
    report.violations += [f"a process exited by itself: {c}" for c in driver.crashes]  # they must ride faults out
    extra = dict(extra() if extra else {})
    if db is not None:
        result = checker.integrity(db)
        extra["sqlite integrity_check"] = result
        if result != "ok":
            report.violations.append(f"PRAGMA integrity_check: {result}")
    chaos_report(checker.summary(name, driver.seed, report, dict(driver.faults), driver.skipped, wall,
                                 driver.crashes, extra))
    assert report.executions >= len(driver.started)
    assert not report.violations, f"seed {driver.seed}: {report.violations[:10]}"


def test_sqlite_cluster_loses_nothing_under_faults(tmp_path, chaos_seed, chaos_size, chaos_report):
    disk = Disk(tmp_path / "disk")
    try:
        where = tmp_path / "disk" if disk.reason is None else tmp_path
        db = where / "chaos.db"
        driver = Driver(f"sqlite:///{db}", tmp_path, chaos_seed, Size(scale=chaos_size), disk=disk)
        run_and_check(driver, "sqlite", chaos_report, db=db, extra=lambda: {
            "log lines where a process met the full disk": driver.log_lines("disk is full", "No space left"),
        })
    finally:
        disk.unmount()


def test_postgres_cluster_loses_nothing_under_faults(tmp_path, pg_schema, chaos_seed, chaos_size, chaos_report):
    driver = Driver(pg_schema.url, tmp_path, chaos_seed, Size(scale=chaos_size), schema=pg_schema.name)
    run_and_check(driver, "postgres", chaos_report)


def test_disk_fault_is_skipped_with_its_reason_when_no_tmpfs_can_be_mounted(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise subprocess.CalledProcessError(32, args[0], stderr=b"mount: permission denied")

    monkeypatch.setattr(subprocess, "run", refuse)
    disk = Disk(tmp_path / "disk")
    assert disk.reason == "cannot mount a tmpfs (mount: permission denied)"
    driver = Driver(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, 1, Size(), disk=disk)
    try:
        assert "disk_full" not in driver.kinds()
        assert driver.skipped == {"disk_full": disk.reason}
    finally:
        driver.jumper.close()
        driver.engine.close()
