"""The lifecycle verbs of `python -m fastcontain`, each from a subprocess as a shell user."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.privileged


def fc(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastcontain", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def ok(*args: str) -> str:
    r = fc(*args)
    assert r.returncode == 0, f"{args}: {r.returncode} {r.stderr}"
    return r.stdout


def test_run_detached_ps_logs_stop_wait_rm():
    cid = ok("run", "-d", "--name", "fc-cli-web", "busybox", "sh", "-c",
             "echo hi; echo oops >&2; exec sleep 60").strip()
    try:
        assert len(cid) == 16
        ps = ok("ps")
        assert cid[:12] in ps and "fc-cli-web" in ps and "Up" in ps
        time.sleep(0.2)
        r = fc("logs", "fc-cli-web")
        assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "oops\n")
        assert ok("stop", "-t", "0.2", "fc-cli-web") == "fc-cli-web\n"
        assert ok("wait", "fc-cli-web") == "137\n"  # sleep as pid 1 ignores TERM: killed
        assert cid[:12] not in ok("ps") and "Exited (137)" in ok("ps", "-a")
        assert ok("ps", "-a", "-q").split().count(cid) == 1
        info = json.loads(ok("inspect", "fc-cli-web"))
        assert info[0]["id"] == cid and info[0]["status"] == "stopped" and info[0]["exit_code"] == -9
        assert fc("run", "-d", "--name", "fc-cli-web", "busybox", "true").returncode == 125  # name taken
    finally:
        fc("rm", "-f", "fc-cli-web")
    assert cid not in ok("ps", "-a")
    assert fc("rm", "fc-cli-web").returncode == 1


def test_create_start_wait():
    cid = ok("create", "--name", "fc-cli-c", "-e", "X=7", "busybox", "sh", "-c", "exit $X").strip()
    try:
        assert "Created" in ok("ps", "-a")
        assert ok("start", "fc-cli-c") == "fc-cli-c\n"
        assert ok("wait", cid) == "7\n"
        r = fc("start", "fc-cli-c")
        assert r.returncode == 1 and "only a created container" in r.stderr
    finally:
        fc("rm", "-f", cid)


def test_start_of_a_missing_command_fails_like_run():
    cid = ok("create", "busybox", "/no/such/program").strip()
    try:
        r = fc("start", cid)
        assert r.returncode == 127 and "execve" in r.stderr
    finally:
        fc("rm", "-f", cid)


def test_kill_with_signal_names_and_numbers():
    cid = ok("run", "-d", "busybox", "sh", "-c", "trap 'exit 3' USR1; trap 'exit 4' TERM; "
             "while true; do sleep 0.1; done").strip()
    try:
        time.sleep(0.3)
        assert fc("kill", "-s", "NOPE", cid).returncode == 125
        assert ok("kill", "-s", "USR1", cid) == cid + "\n"
        assert ok("wait", cid) == "3\n"
        assert fc("kill", cid).returncode == 1  # not running any more
    finally:
        fc("rm", "-f", cid)
    cid = ok("run", "-d", "busybox", "sleep", "60").strip()
    try:
        ok("kill", "-s", "9", cid)
        assert ok("wait", cid) == "137\n"
    finally:
        fc("rm", cid)


def test_rm_refuses_running_and_force_kills():
    cid = ok("run", "-d", "busybox", "sleep", "60").strip()
    try:
        r = fc("rm", cid)
        assert r.returncode == 1 and "running" in r.stderr
    finally:
        assert ok("rm", "-f", cid) == cid + "\n"
    assert cid not in ok("ps", "-a")


def test_detached_rm_removes_itself():
    cid = ok("run", "-d", "--rm", "busybox", "true").strip()
    deadline = time.monotonic() + 30
    while cid in ok("ps", "-a", "-q") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cid not in ok("ps", "-a", "-q")


def test_logs_tail_and_follow():
    cid = ok("run", "-d", "busybox", "sh", "-c", "for i in 1 2 3 4; do echo $i; sleep 0.1; done").strip()
    try:
        assert ok("logs", "-f", cid) == "1\n2\n3\n4\n"
        assert ok("logs", "--tail", "2", cid) == "3\n4\n"
    finally:
        fc("rm", "-f", cid)


def test_pause_and_unpause():
    cid = ok("run", "-d", "busybox", "sleep", "60").strip()
    try:
        assert ok("pause", cid) == cid + "\n"
        assert "Paused" in ok("ps")
        assert fc("pause", cid).returncode == 1
        assert ok("unpause", cid) == cid + "\n"
        assert "Up" in ok("ps")
    finally:
        fc("rm", "-f", cid)


def test_stats_reads_a_running_containers_cgroup_and_inspect_reports_an_oom_kill():
    ok("run", "-d", "--name", "fc-cli-stats", "--memory", "32m", "--pids-limit", "32", "busybox",
       "sh", "-c", "sleep 60 & sleep 60 & exec sleep 60")
    hog = None
    try:
        deadline = time.monotonic() + 30
        while True:  # the payload forks its two sleeps after exec: look until they are there
            rows = json.loads(ok("stats", "--no-stream", "--format", "json", "fc-cli-stats"))
            if rows[0]["pids_current"] == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(rows) == 1 and rows[0]["name"] == "fc-cli-stats"
        row = rows[0]
        assert row["pids_current"] == 3  # sh's exec'd sleep and its two children
        assert row["memory_current"] > 0 and row["memory_peak"] >= row["memory_current"]
        assert row["cpu_usage_us"] is not None and row["oom_kills"] == 0
        table = ok("stats", "--no-stream")  # every running container, as a table
        assert "CONTAINER ID" in table and "fc-cli-stats" in table

        hog = ok("run", "-d", "--name", "fc-cli-hog", "--memory", "32m", "busybox",
                 "sh", "-c", "exec tail /dev/zero").strip()
        assert ok("wait", "fc-cli-hog") == "137\n"
        info = json.loads(ok("inspect", "fc-cli-hog"))[0]
        assert info["oom_killed"] is True
        r = fc("stats", "--no-stream", "fc-cli-hog")  # stopped: its cgroup is gone
        assert r.returncode == 1 and "stopped" in r.stderr
    finally:
        fc("rm", "-f", "fc-cli-stats")
        if hog is not None:
            fc("rm", "-f", "fc-cli-hog")
