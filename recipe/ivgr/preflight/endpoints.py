"""The preflight's probes of OpenAI-compatible servers (the judge; IVR-R1's attributor and teacher):
`GET {base_url}/models` from this machine, the configured model among the served ones."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from recipe.ivgr.preflight.config import select
from recipe.ivgr.preflight.report import Findings


def check_judge(config, findings: Findings, timeout_s: float) -> str:
    """Probe the reward's judge (`reward_score.judge`); returns a one-line status for the summary."""
    if not select(config, "reward_score.judge.base_url"):
        if bool(select(config, "ivgr.consistency.enable", True)) or bool(select(config, "reward_score.judge_accuracy",
                                                                                 True)):
            findings.warn("judge: not configured (reward_score.judge.base_url / JUDGE_BASE_URL unset): the "
                          "consistency reward stays 0 and undecided answers score reward_score.undecided_fallback; "
                          "start one with scripts/serve_judge.sh")
        return "not configured"
    return check_endpoint(config, findings, timeout_s, "reward_score.judge", "judge")


def check_endpoint(config, findings: Findings, timeout_s: float, prefix: str, label: str) -> str:
    """Probe `GET {<prefix>.base_url}/models` of an OpenAI-compatible server: reachable, serves
    `<prefix>.model`, reachable from every node; returns a one-line status for the summary."""
    base_url = select(config, f"{prefix}.base_url")
    model = str(select(config, f"{prefix}.model", "judge"))
    if not base_url:
        return "not configured"
    base = str(base_url).strip().rstrip("/")
    nnodes = int(select(config, "trainer.nnodes", 1))
    host = urllib.parse.urlparse(base).hostname or ""
    if nnodes > 1 and host in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
        findings.problem(f"{prefix}.base_url={base} points at {host} but trainer.nnodes={nnodes}: workers on "
                         "the other nodes cannot reach it; use the server machine's address")
    url = f"{base}/models"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    key_env = str(select(config, f"{prefix}.api_key_env", "JUDGE_API_KEY"))
    if os.environ.get(key_env):
        request.add_header("Authorization", f"Bearer {os.environ[key_env]}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (user-configured URL)
            body = response.read()
    except urllib.error.HTTPError as err:
        findings.problem(f"{label}: GET {url} answered HTTP {err.code} ({err.reason})"
                         + (f"; set {key_env} if the server needs a key" if err.code in (401, 403) else ""))
        return "error"
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        findings.problem(f"{label}: cannot reach {url}: {reason} (is the server running? scripts/serve_judge.sh)")
        return "unreachable"
    try:
        served = [str(entry.get("id")) for entry in json.loads(body).get("data", [])]
    except (ValueError, AttributeError, TypeError):
        findings.problem(f"{label}: GET {url} did not return an OpenAI model list (is {base} the /v1 root?)")
        return "error"
    if model not in served:
        findings.problem(f"{label}: {base} serves {served} but {prefix}.model={model!r}: set it to the "
                         "served name (vLLM --served-model-name)")
        return "wrong model"
    findings.note(f"{label}: {base} serves {model!r} (checked from this machine only)")
    return f"{model} at {base}"
