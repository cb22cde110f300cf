"""The same sweep on a real Dask cluster (scheduler and two workers on 127.0.0.1) and locally: the same rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client

# Dask's own command, from the environment running the tests.
DASK = str(Path(sys.executable).with_name("dask")) if Path(sys.executable).with_name("dask").exists() else "dask"
SWEEP = ("sweep", "stochastic_crash", "--set", "insurance_fund.balance=0,300", "--seeds", "3")


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    # Its own session, so teardown can end exactly this process and anything it started.
    with open(log, "wb") as sink:
        return subprocess.Popen([DASK, *args], cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue


def test_a_sweep_on_a_dask_cluster_writes_the_same_rows_as_the_local_pool(tmp_path: Path):
    scheduler_file = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(scheduler_file)], tmp_path, tmp_path / "scheduler.log"))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.1)
        assert scheduler_file.exists(), (tmp_path / "scheduler.log").read_text()
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for i in range(2):
            procs.append(_start(["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(tmp_path / f"w{i}"),
                                 "--death-timeout", "60"], tmp_path, tmp_path / f"worker{i}.log"))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            assert len(client.scheduler_info()["workers"]) == 2

        on_dask = subprocess.run([sys.executable, "-m", "sandbox", *SWEEP, "--scheduler", address,
                                  "--out", str(tmp_path / "dask")], capture_output=True, text=True, timeout=300)
        assert on_dask.returncode == 0, on_dask.stderr
        assert f"6 runs on the Dask cluster at {address}" in on_dask.stdout
        assert "runs/s on the Dask cluster" in on_dask.stdout
        with Client(address, timeout="30s") as client:
            # Both workers took part (each ran a share of the six runs).
            done = client.run(lambda dask_worker: dask_worker.state.executed_count)
            assert len(done) == 2 and all(n > 0 for n in done.values()), done
    finally:
        for proc in reversed(procs):
            _stop(proc)
    assert all(proc.poll() is not None for proc in procs)

    local = subprocess.run([sys.executable, "-m", "sandbox", *SWEEP, "--workers", "2", "--out", str(tmp_path / "local")],
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    dask_rows = (tmp_path / "dask" / "runs.jsonl").read_bytes()
    assert dask_rows == (tmp_path / "local" / "runs.jsonl").read_bytes()
    assert dask_rows.count(b"\n") == 6
    assert (json.loads((tmp_path / "dask" / "summary.json").read_text())
            == json.loads((tmp_path / "local" / "summary.json").read_text()))


def test_an_unreachable_scheduler_is_bad_input(tmp_path: Path):
    import socket

    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "sandbox", *SWEEP, "--scheduler", f"tcp://127.0.0.1:{port}",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"sandbox: --scheduler tcp://127.0.0.1:{port}: cannot connect")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()
