"""The benchmarks, small and short: they run end to end and what they report is correct (every subscriber reached
the final state, no oversell, a table was written). Never a timing assertion: speed is measured by bench/ itself."""

import os
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, admin_url, marquee_bin

sys.path.insert(0, os.path.join(ROOT, "bench"))
import compare  # noqa: E402
import reservations  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def results_file():
    fd, path = tempfile.mkstemp(prefix="marquee-bench-results-", suffix=".md")
    os.close(fd)
    yield path
    os.unlink(path)


@pytest.fixture(autouse=True)
def the_tested_binary(monkeypatch):
    # the binary under test, not a release build left over from an earlier benchmark
    monkeypatch.setenv("MARQUEE_BENCH_BIN", marquee_bin())


def own_processes(name):
    """Processes named `name` whose parent is this test process (what the benchmark started and must have ended)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,comm", "--no-headers"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[2:3] == [name] and int(line.split()[1]) == os.getpid()]


def bench_temp_dirs():
    return {d for d in os.listdir(tempfile.gettempdir()) if d.startswith(("marquee-bench-", "marquee-server-"))}


def test_fan_out_comparison_delivers_every_update_to_every_subscriber(results_file):
    if not compare.nchan_module():
        pytest.fail("nginx with the Nchan module is missing: scripts/setup.sh installs nginx and libnginx-mod-nchan")
    temp_before = bench_temp_dirs()
    rows = compare.main(["--subscribers", "20", "60", "--rate", "20", "--seconds", "2", "--workers", "2",
                         "--final-timeout", "60", "--database-url", admin_url(), "--results", results_file, "--write", "--quiet"])

    assert [(r["server"], r["subscribers"]) for r in rows] == [("Marquee", 20), ("Nchan", 20), ("Marquee", 60), ("Nchan", 60)]
    for r in rows:
        assert "error" not in r, r
        assert r["subscribed"] == r["subscribers"], r
        assert r["commits"] > 0, r
        assert r["final_ok"] == r["subscribers"], f"{r['server']}: not every subscriber saw the final state: {r}"
        assert r["wrong_final"] == 0, r
        assert r["duplicates"] == 0, r
        assert r["delivered"] >= r["commits"] * r["subscribers"] - r["gaps"], r
    marquee = [r for r in rows if r["server"] == "Marquee"]
    nchan = [r for r in rows if r["server"] == "Nchan"]
    assert all(r["frame_bytes"] > 200 for r in marquee), marquee
    assert [round(r["frame_bytes"]) for r in nchan] == [round(marquee[0]["frame_bytes"])] * 2, (marquee, nchan)

    text = open(results_file).read()
    assert "### Fan-out, Marquee vs Nchan" in text
    assert text.count("| Marquee | ") == 2 and text.count("| Nchan | ") == 2, text
    assert "Nchan ÷ Marquee deliveries per CPU-s" in text
    assert not own_processes("nginx") and not own_processes("marquee"), "the benchmark left processes running"
    assert bench_temp_dirs() <= temp_before, "the benchmark left temporary folders behind"


def test_coalesced_fan_out_reaches_the_final_state_with_fewer_frames(results_file):
    """With the server's coalescing on, a subscriber may skip intermediate versions of the ticket type, but it never
    sees one twice or out of order and always ends at the final one; and it gets at most one frame per window (plus
    the first one at once), whatever the commit rate."""
    seconds, rate, window_ms = 2, 50, 100
    rows = compare.main(["--servers", "marquee", "--subscribers", "20", "--rate", str(rate), "--seconds", str(seconds),
                         "--workers", "2", "--coalesce-ms", str(window_ms), "--final-timeout", "60", "--database-url", admin_url(),
                         "--results", results_file, "--write", "--quiet"])
    [r] = rows
    assert "error" not in r, r
    assert r["subscribed"] == 20 and r["commits"] > 0, r
    assert r["final_ok"] == 20 and r["wrong_final"] == 0, r
    assert r["duplicates"] == 0, r  # nothing twice, nothing older after newer
    assert r["delivered"] + r["gaps"] == r["commits"] * 20, r  # each version either delivered once or skipped
    windows = r["elapsed"] * 1000 / window_ms
    assert r["delivered"] <= 20 * (windows + 2), r
    assert "coalesces availability rows every 100 ms" in open(results_file).read()


def test_reservation_throughput_never_oversells(results_file):
    rows = reservations.main(["--types", "1", "3", "--concurrency", "8", "--seconds", "2", "--capacity", "25",
                              "--database-url", admin_url(), "--results", results_file, "--write", "--quiet"])

    assert [(r["path"], r["types"]) for r in rows] == [("HTTP API", 1), ("pgbench (SQL)", 1), ("HTTP API", 3), ("pgbench (SQL)", 3)]
    for r in rows:
        assert "error" not in r, r
        assert r["bad_counts"] == [], f"counts that do not add up (or an oversell): {r['bad_counts']}"
        assert r["rows_match"], r
        assert r["held"] <= r["capacity"], r
        assert r["ok"] > 0, r
    for r in rows:
        if r["path"] == "HTTP API":
            assert r["other"] == 0, r["statuses"]
            assert r["held"] == r["ok"] <= 25 * r["types"], r
    text = open(results_file).read()
    assert "### Reservation throughput, HTTP API vs pgbench" in text
    assert "HTTP API ÷ pgbench reservations/s" in text
