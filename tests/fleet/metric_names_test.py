"""The shipped dashboard (deploy/grafana) and alert rules (deploy/prometheus)
query only metrics a running fleet exposes: the controller's (sesamectl
stats) and each agent's (the metrics its heartbeats carry, the same names as
its MetricsFile)."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import AGENT_NAME, BASTIONS, check, log, run_scenario, wait_until  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scenario(fleet):
    fleet.wait_connected()
    names = {m["name"] for m in fleet.sesamectl_json("stats")[0]["metrics"]}

    # A heartbeat sent as the session opens may come before the agent's
    # first round of capture and matcher metrics; the next one has them.
    def agent_metrics(bastion):
        [agent] = fleet.sesamectl_json("agents", "show", AGENT_NAME[bastion])
        names = {m["name"] for m in agent["metrics"]}
        return agent["metrics"] if "sesame_agent_knocks_seen_total" in names else None

    for b in BASTIONS:
        metrics, _ = wait_until(lambda b=b: agent_metrics(b), 60, f"{AGENT_NAME[b]}'s heartbeat with its metrics")
        names |= {m["name"] for m in metrics}
    log(f"the fleet exposes {len(names)} metric names")
    with tempfile.NamedTemporaryFile("w", suffix=".names") as f:
        f.write("\n".join(sorted(names)) + "\n")
        f.flush()
        result = subprocess.run([sys.executable, os.path.join(REPO, "tests/deploy/metric_names.py"), "live", REPO,
                                 f.name], capture_output=True, text=True)
    log(result.stdout.strip())
    check(result.returncode == 0, result.stdout + result.stderr)


run_scenario(scenario)
