"""Policy change control driven through the API, for the benchmarks: the people who change the policy,
a candidate that differs from the live policy, a challenger started in shadow, a promotion and a
rollback, and the shadow scorer's counts read from every API process's /metrics.

Everything goes the way an operator goes (README, "Changing the policy"): accounts made with the
documented command line on the system's database, signed in at /api/v1/auth/token, the candidate
registered at POST /api/v1/policy-versions by one risk user and promoted by another (four eyes).
"""

from __future__ import annotations

import contextlib
import http.client
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools import servers
from evaluation_api.config import POLICY_PATH

# The candidate: the live policy with one segment's decision changed, so that the challenger's decisions
# really differ for that segment's customers (about a fifth of the workload's).
CANDIDATE_SEGMENT, CANDIDATE_DECISION = "high_limit_revolvers", "denied"
SHADOW_OUTCOMES = ("stored", "dropped", "failed")


def candidate_policy(label: str) -> str:
    """The packaged policy under another label, with CANDIDATE_SEGMENT decided CANDIDATE_DECISION."""
    data = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    data["version"] = label
    data["segments"][CANDIDATE_SEGMENT]["decision"] = CANDIDATE_DECISION
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def create_account(database_url: str, username: str, role: str, password: str) -> None:
    """`python -m evaluation_api.identity.accounts create NAME --role ROLE --password-stdin`."""
    done = subprocess.run(
        [sys.executable, "-m", "evaluation_api.identity.accounts", "create", username, "--role", role,
         "--password-stdin"],
        cwd=servers.ROOT, env=servers.project_env(DATABASE_URL=database_url), input=password + "\n",
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"could not create the account {username}: {done.stderr[-2000:]}")


class Refused(RuntimeError):
    """The API answered a change-control call with something else than success."""


@dataclass
class Operators:
    """Two people with the risk role: `author` registers the candidate and starts the challenger,
    `approver` promotes it and rolls back (whoever registered a version cannot promote it)."""

    url: str
    author: dict[str, str]
    approver: dict[str, str]

    @classmethod
    def sign_up(cls, url: str, database_url: str) -> Operators:
        headers = []
        for name in ("bench-risk-author", "bench-risk-approver"):
            password = secrets.token_urlsafe(18)
            create_account(database_url, name, "risk", password)
            answer = httpx.post(f"{url}/api/v1/auth/token", data={"username": name, "password": password}, timeout=30)
            if answer.status_code != 200:
                raise Refused(f"sign-in of {name}: {answer.status_code} {answer.text[:300]}")
            headers.append({"Authorization": f"Bearer {answer.json()['access_token']}"})
        return cls(url, headers[0], headers[1])

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str], expect: int) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)
        if answer.status_code != expect:
            raise Refused(f"POST {path}: {answer.status_code} {answer.text[:500]}")
        result: dict[str, Any] = answer.json()
        return result

    def start_challenger(self, label: str) -> dict[str, Any]:
        """Register the candidate (a draft) and start it as the challenger: from then on every API process
        decides each evaluation again with it, in shadow, within RELEASE_POLL_S."""
        version = self._post("/api/v1/policy-versions", {"text": candidate_policy(label)}, self.author, 201)
        challenger = self._post("/api/v1/challengers", {"policy_version_id": version["id"]}, self.author, 201)
        return {
            "policy_version_id": version["id"],
            "policy_version": version["label"],
            "challenger_id": challenger["id"],
            "differs_in": {CANDIDATE_SEGMENT: CANDIDATE_DECISION},
        }

    def promote(self, challenger_id: int, justification: str) -> dict[str, Any]:
        return self._post(
            f"/api/v1/challengers/{challenger_id}/promote", {"justification": justification}, self.approver, 200
        )

    def rollback(self, justification: str) -> dict[str, Any]:
        return self._post("/api/v1/releases/rollback", {"justification": justification}, self.approver, 200)

    def report(self, challenger_id: int) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/api/v1/challengers/{challenger_id}/report", headers=self.author, timeout=30)
        if answer.status_code != 200:
            raise Refused(f"report of challenger {challenger_id}: {answer.status_code} {answer.text[:300]}")
        result: dict[str, Any] = answer.json()
        return result


def live_policy_version(url: str, headers: dict[str, str]) -> str:
    """The label of the policy live now (the newest release's)."""
    answer = httpx.get(f"{url}/api/v1/releases", headers=headers, timeout=30)
    if answer.status_code != 200:
        raise Refused(f"GET /api/v1/releases: {answer.status_code} {answer.text[:300]}")
    return str(answer.json()[0]["policy_version"])


# --- /metrics of every process -----------------------------------------------------------------------


def _counts(text: str) -> dict[str, float]:
    """shadow_decisions_total by outcome, and the evaluations decided (evaluation_decisions_total, summed)."""
    out = dict.fromkeys((*SHADOW_OUTCOMES, "decisions"), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "shadow_decisions_total" and sample.labels.get("outcome") in SHADOW_OUTCOMES:
                out[sample.labels["outcome"]] += sample.value
            elif sample.name == "evaluation_decisions_total":
                out["decisions"] += sample.value
    return out


def _owner(pids: list[int], server_port: int, client_port: int) -> int | None:
    """Which of the processes holds the server side of our connection (they share the port, SO_REUSEPORT)."""
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.laddr and c.raddr and c.laddr.port == server_port and c.raddr.port == client_port:
                    return pid
    return None


def scrape_each(url: str, pids: list[int], *, attempts: int = 200) -> dict[int, str]:
    """/metrics of every API process. Each keeps its own registry and the kernel hands each new
    connection to one of them, so this opens connections until every process has answered one,
    telling which answered by the connection it holds."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    texts: dict[int, str] = {}
    for _ in range(attempts):
        if len(texts) == len(pids):
            break
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("GET", "/metrics")
            answer = connection.getresponse()
            body = answer.read().decode()
            if answer.status != 200 or connection.sock is None:
                continue
            owner = _owner(pids, int(port), connection.sock.getsockname()[1])
            if owner is not None and owner not in texts:
                texts[owner] = body
        finally:
            connection.close()
    if len(texts) < len(pids):
        raise RuntimeError(f"/metrics answered by {sorted(texts)} only, of the API processes {pids}")
    return texts


def shadow_counts(url: str, pids: list[int], *, settle_s: float = 15.0) -> dict[str, Any]:
    """The shadow scorer's counts in every process, once its queue has drained (every evaluation
    decided is then stored, dropped or failed; `pending` is what was still queued after settle_s)."""
    deadline = time.monotonic() + settle_s
    while True:
        per_process = {pid: _counts(text) for pid, text in scrape_each(url, pids).items()}
        total = {k: sum(c[k] for c in per_process.values()) for k in (*SHADOW_OUTCOMES, "decisions")}
        pending = total["decisions"] - sum(total[k] for k in SHADOW_OUTCOMES)
        if pending <= 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    as_int = lambda c: {k: int(v) for k, v in c.items()}  # noqa: E731
    return {
        "per_process": [{"pid": pid, **as_int(c)} for pid, c in sorted(per_process.items())],
        **as_int(total),
        "pending": int(pending),
    }


def delta(after: dict[str, Any], before: dict[str, Any] | None) -> dict[str, int]:
    """What a round added to the cumulative counts."""
    keys = (*SHADOW_OUTCOMES, "decisions")
    return {k: int(after[k]) - int(before[k] if before else 0) for k in keys}
