"""The benchmarks, small and short: they run end to end and what they report is correct (every subscriber reached
the final state, no oversell, a table was written). Never a timing assertion: speed is measured by bench/ itself."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, admin_url, marquee_bin

sys.path.insert(0, os.path.join(ROOT, "bench"))
import compare  # noqa: E402
import hot_row  # noqa: E402
import reservations  # noqa: E402
import scale  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def results_file():
    fd, path = tempfile.mkstemp(prefix="marquee-smoke-results-", suffix=".md")
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


@pytest.fixture
def bench_temp(monkeypatch):
    """A temporary folder of its own for what the benchmark creates (servers' data, nginx's config), so that what it
    leaves behind can be told apart from what anything else on the machine does meanwhile."""
    path = tempfile.mkdtemp(prefix="marquee-smoke-tmp-")
    os.chmod(path, 0o755)  # PostgreSQL and nginx workers run unprivileged when this runs as root
    monkeypatch.setattr(tempfile, "tempdir", path)
    yield path
    monkeypatch.undo()
    leftovers = os.listdir(path)
    shutil.rmtree(path, ignore_errors=True)
    assert not leftovers, f"the benchmark left temporary folders behind: {leftovers}"


def test_fan_out_comparison_delivers_every_update_to_every_subscriber(results_file, bench_temp):
    if not compare.nchan_module():
        pytest.fail("nginx with the Nchan module is missing: scripts/setup.sh installs nginx and libnginx-mod-nchan")
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


def test_coalesced_fan_out_reaches_the_final_state_with_fewer_frames(results_file, bench_temp):
    """With the server's coalescing on, a subscriber may skip intermediate versions of the ticket type, but it never
    sees one twice or out of order and always ends at the final one; and it gets at most one frame per window (plus
    the first one at once, and one more at most when a version arrives in the last half of the first window),
    whatever the commit rate."""
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


def test_reservation_throughput_never_oversells(results_file, bench_temp):
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


def test_hot_row_variants_never_oversell(results_file, bench_temp):
    rows = hot_row.main(["--clients", "8", "--seconds", "1", "--shards", "4", "--batches", "8", "--sell-out", "40",
                         "--database-url", admin_url(), "--results", results_file, "--write", "--quiet"])

    assert [r["variant"] for r in rows] == ["one row", "4 rows", "one row, batches of 8"]
    for r in rows:
        assert "error" not in r, r
        for run in (r, r["sell_out"]):
            assert run["over"] == 0 and run["mismatched"] == 0, run
            assert run["taken"] == run["holds"] <= run["capacity"], run
        assert r["holds"] > 0, r
        assert r["sell_out"]["holds"] == 40, f"the small capacity (a multiple of the batch) was not sold out exactly: {r}"
    assert "### One hot ticket type" in open(results_file).read()


def test_subscribers_spread_over_nodes_all_reach_the_final_state(results_file, bench_temp):
    row = scale.main(["--subscribers", "60", "--nodes", "2", "--workers", "2", "--rate", "10", "--seconds", "2",
                      "--final-timeout", "60", "--database-url", admin_url(), "--results", results_file, "--write", "--quiet"])

    assert "error" not in row, row
    assert row["subscribed"] == 60 and row["closed"] == 0 and row["alive"], row
    assert row["commits"] > 0 and row["final_ok"] == 60 and row["wrong_final"] == 0, row
    assert row["duplicates"] == 0 and row["delivered"] >= row["expected"] - row["gaps"], row
    assert len(row["nodes_detail"]) == 2, row
    assert "### Many subscribers on one event" in open(results_file).read()
    assert not own_processes("marquee"), "the benchmark left servers running"
