#!/usr/bin/env python3
"""The metric names the shipped dashboard (deploy/grafana) and alert rules
(deploy/prometheus) query, checked against what sesame exports.

  metric_names.py static SOURCE_DIR
      the dashboard is a Grafana dashboard (panels with a Prometheus query
      each, unique ids and refIds, the data source an input), and every
      sesame_* name it or the rules query is one the daemons' code writes
  metric_names.py live SOURCE_DIR NAMES_FILE
      every sesame_* name queried is in NAMES_FILE (one name a line: what a
      running fleet exposes, tests/fleet/metric_names_test.py)
"""
import json
import os
import re
import sys

import yaml

NAME = re.compile(r"\b((?:sesame|node)_[a-z0-9_]+)\b")
# Not sesame's: node_exporter's own, for the textfile collector's freshness.
FOREIGN = {"node_textfile_mtime_seconds"}


def queried(source):
    """{name: [where...]} of every metric the dashboard and the rules query."""
    names = {}
    with open(os.path.join(source, "deploy/grafana/sesame-fleet.json")) as f:
        dashboard = json.load(f)
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in NAME.findall(target["expr"]):
                names.setdefault(name, []).append(f"dashboard panel '{panel['title']}'")
    for variable in dashboard["templating"]["list"]:
        for name in NAME.findall(variable.get("definition", "")):
            names.setdefault(name, []).append(f"dashboard variable '{variable['name']}'")
    with open(os.path.join(source, "deploy/prometheus/sesame.rules.yml")) as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in NAME.findall(rule["expr"]):
                names.setdefault(name, []).append(f"alert {rule['alert']}")
    return names, dashboard


def check_dashboard(dashboard):
    problems = []
    ids = set()
    inputs = {i["name"] for i in dashboard.get("__inputs", [])}
    for panel in dashboard["panels"]:
        if panel["id"] in ids:
            problems.append(f"panel id {panel['id']} twice")
        ids.add(panel["id"])
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"panel '{panel['title']}' queries nothing")
        if len({t["refId"] for t in targets}) != len(targets):
            problems.append(f"panel '{panel['title']}': a refId twice")
        if panel["datasource"]["uid"].strip("${}") not in inputs:
            problems.append(f"panel '{panel['title']}': data source {panel['datasource']} is no input")
        for key in ("x", "y", "w", "h"):
            if key not in panel.get("gridPos", {}):
                problems.append(f"panel '{panel['title']}': no gridPos.{key}")
    return problems


def exported_by_code(source):
    names = set()
    for part in ("agent", "controller", "common"):
        for root, _, files in os.walk(os.path.join(source, part)):
            for name in files:
                if name.endswith((".cc", ".h")):
                    with open(os.path.join(root, name), errors="replace") as f:
                        names.update(re.findall(r'"(sesame_[a-z0-9_]+)"', f.read()))
    return names


def main():
    mode, source = sys.argv[1], sys.argv[2]
    names, dashboard = queried(source)
    problems = []
    if mode == "static":
        problems += check_dashboard(dashboard)
        known = exported_by_code(source) | FOREIGN
        what, ok = "written by no daemon", "every one written by a daemon"
    else:
        with open(sys.argv[3]) as f:
            known = {line.strip() for line in f if line.strip()} | FOREIGN
        what, ok = "not exposed by the running fleet", "every one exposed by the running fleet"
    for name, places in sorted(names.items()):
        if name not in known:
            problems.append(f"{name} ({', '.join(sorted(set(places)))}) is {what}")
    for p in problems:
        print(f"FAIL: {p}")
    if not problems:
        print(f"PASS: {len(names)} metric names queried by the dashboard and the rules, {ok}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
