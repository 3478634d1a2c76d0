"""deploy/alerts.yml: valid for Prometheus (promtool check rules), each alert fires when it should (promtool test
rules with deploy/alerts.test.yml), uses only metrics the server exports, and is explained in docs/operations.md."""

import os
import re
import shutil
import subprocess
import warnings

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "deploy", "alerts.yml")
CATALOG = os.path.join(ROOT, "Sources", "MarqueeServer", "Metrics", "MetricsRegistry.swift")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"sum", "by", "rate", "clamp_min", "histogram_quantile", "or", "and", "le", "up", "without", "max", "min",
                "avg", "increase", "on", "ignoring", "group_left"}


def catalog_names():
    text = open(CATALOG).read()
    return set(re.findall(r'^\s*\("(marquee_[a-z_]+)",', text, re.M))


def rules():
    with open(RULES) as f:
        document = yaml.safe_load(f)
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_rules_file_is_valid_for_prometheus():
    promtool = shutil.which("promtool")
    if promtool is None:
        warnings.warn("promtool is missing (Debian package prometheus): only the YAML and metric-name checks ran")
        return
    checked = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", os.path.join(ROOT, "deploy", "alerts.test.yml")],
                            capture_output=True, text=True, cwd=os.path.join(ROOT, "deploy"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_rule_is_complete_and_uses_exported_metrics():
    known = catalog_names()
    assert "marquee_commit_to_send_seconds" in known  # the catalog was read
    names = set()
    for rule in rules():
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        assert rule["alert"] not in names, "duplicate alert " + rule["alert"]
        names.add(rule["alert"])
        expr = re.sub(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"|\b(by|without|on|ignoring)\s*\([^)]*\)', "", rule["expr"])
        for word in re.findall(r"[a-z_][a-z0-9_]*", expr):
            if word in PROMQL_WORDS:
                continue
            base = next((word[: -len(s)] for s in HISTOGRAM_SUFFIXES if word.endswith(s) and word[: -len(s)] in known), word)
            assert base in known, f"{rule['alert']} uses {word}, which the server does not export"
    # what the issue asks to alert on
    assert {"MarqueeHighErrorRate", "MarqueeChangeFeedLagging", "MarqueeDeliveryLatencyHigh", "MarqueeSlowConsumers",
            "MarqueeLimitFlood", "MarqueeDatabaseDown"} <= names


def test_every_rule_is_explained_in_operations_doc():
    doc = open(os.path.join(ROOT, "docs", "operations.md")).read()
    for rule in rules():
        assert f"**`{rule['alert']}`**" in doc, f"docs/operations.md does not explain {rule['alert']}"
        assert rule["expr"] in doc, f"docs/operations.md does not show the expression of {rule['alert']}"


def test_operations_doc_describes_every_metric():
    doc = open(os.path.join(ROOT, "docs", "operations.md")).read()
    for name in catalog_names():
        assert re.search(r"\| `%s(\{[a-z_,]+\})?` \|" % re.escape(name), doc), f"docs/operations.md does not describe {name}"
