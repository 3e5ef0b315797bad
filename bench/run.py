"""Benchmarks: IAM calls per operation, wall time under simulated IAM latency and throttling,
cold start.

Run with ``make bench`` (``python bench/run.py --help`` for subsets). Figures are printed, not
asserted by timers; call counts are also asserted by the test suite so a regression fails CI. IAM
is moto plus the tests' strict layer (paging, quotas, DeleteConflict, IAM's token-bucket
throttle), with a simulated per-call latency.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    JETS_REGISTRY_TABLE="bench-registry",
    POWERTOOLS_LOG_LEVEL="ERROR",  # the handler in process (continuation): no line per change
)
for _var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(_var, None)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from helpers import ENV, Stack, controller_sender, event  # noqa: E402
from jets_deploy_iam.config import Deadline, ReconcileConfig  # noqa: E402
from jets_deploy_iam.iam.client import make_iam_client  # noqa: E402
from jets_deploy_iam.reconcile import Controller  # noqa: E402
from jets_deploy_iam.registry.store import DynamoDBRegistry, MemoryRegistry, create_table  # noqa: E402
from jets_deploy_iam.request import parse_request  # noqa: E402
from strict_iam import StrictIam  # noqa: E402

LATENCY = 0.020
#: The function's time as recommended for the template (Timeout 900 s) less the deadline margin.
FUNCTION_SECONDS = 900.0
rows: list[tuple[str, str, str]] = []


def report(name: str, value: str, bar: str) -> None:
    rows.append((name, value, bar))
    print(f"  {name:<66} {value:>12}   (bar: {bar})", flush=True)


def users(n: int, start: int = 0) -> list[str]:
    return [f"user{i:04d}" for i in range(start, start + n)]


class DynamoCalls:
    """Counts the registry's DynamoDB requests, as botocore sends them."""

    def __init__(self, client: object) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-call.dynamodb", self._seen)  # type: ignore[attr-defined]

    def _seen(self, model: object, **_kwargs: object) -> None:
        self.calls.append(model.name)  # type: ignore[attr-defined]

    def take(self) -> str:
        """Requests, as DynamoDB bills them: a record and its claims are one BatchGetItem; a
        write is one PutItem, or one TransactWriteItems when claims change with the record."""
        reads = sum(1 for c in self.calls if c in ("GetItem", "BatchGetItem"))
        writes = sum(1 for c in self.calls if c in ("PutItem", "TransactWriteItems"))
        self.calls.clear()
        return f"{reads} / {writes}"


def scenario_calls() -> None:
    strict = StrictIam()
    with mock_aws(), strict.installed():
        client = make_iam_client()
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "bench-registry")
        dynamo = DynamoCalls(dynamodb)
        registry = DynamoDBRegistry(dynamodb, "bench-registry")
        for name in users(1050):
            client.create_user(UserName=name)
        send = controller_sender(client, registry, ReconcileConfig())

        strict.reset()
        strict.latency = LATENCY
        bench400 = Stack(send, logical_id="Bench400")
        started = time.perf_counter()
        assert bench400.create({"GroupName": "Bench400", "Users": users(400)}).ok
        wall = time.perf_counter() - started
        calls = len(strict.calls)
        report("400-member Create: IAM reads", str(len(strict.reads)), "<= 20")
        report("400-member Create: IAM writes", str(len(strict.writes)), "402")
        report(
            "400-member Create: wall / (calls x 20 ms)",
            f"{wall / (calls * LATENCY):.3f}",
            "<= 0.2",
        )
        report("400-member Create: max IAM calls in flight", str(strict.max_in_flight), "<= 8")
        report("400-member Create: wall time", f"{wall:.2f} s", "-")
        report("Create: registry reads / writes (DynamoDB)", dynamo.take(), "1 / 2")

        strict.latency = 0
        jets = Stack(send)
        strict.reset()
        assert jets.create({"Users": users(1000)}).ok
        report("1,000-member Create: reads / writes",
               f"{len(strict.reads)} / {len(strict.writes)}", "-")  # fmt: skip
        dynamo.take()

        strict.reset()
        strict.latency = LATENCY
        started = time.perf_counter()
        assert jets.update({"Users": users(1000), "Exclusive": "true"}).ok
        wall = time.perf_counter() - started
        report("no-op Update, 1,000 members: writes", str(len(strict.writes)), "0")
        report("no-op Update, 1,000 members: reads", str(len(strict.reads)), "<= 10")
        report("no-op Update, 1,000 members: wall time", f"{wall:.2f} s", "-")
        report("no-op Update: registry reads / writes (DynamoDB)", dynamo.take(), "1 / 1")

        strict.reset()
        assert jets.update({"Users": users(975, 25) + users(25, 1000)}).ok
        report("Update +25/-25 of 1,000 members: writes", str(len(strict.writes)), "50")
        report("Update: registry reads / writes (DynamoDB)", dynamo.take(), "1 / 2")

        strict.latency = 0
        small = Stack(send, logical_id="Bench100")
        assert small.create({"GroupName": "Bench100", "Users": users(100)}).ok
        dynamo.take()
        strict.latency = LATENCY
        strict.reset()
        started = time.perf_counter()
        assert small.delete().ok
        wall = time.perf_counter() - started
        report("Delete of a 100-member group: wall time", f"{wall:.2f} s", "seconds, no sleeps")
        report("Delete of a 100-member group: calls", str(len(strict.calls)), "-")
        report("Delete: registry reads / writes (DynamoDB)", dynamo.take(), "1 / 2")


def scenario_throttled(members: int, rate: float, config: ReconcileConfig | None = None) -> None:
    """A Create of ``members`` users through the real reconciler against an IAM that grants
    ``rate`` writes a second (burst: one second's worth), 20 ms per call, with the deadline the
    handler would compute. The floor is members / rate: no client adds members faster."""
    config = config or ReconcileConfig()
    strict = StrictIam()
    label = f"{members:,}-member Create at {rate:g} writes/s"
    with mock_aws(), strict.installed():
        client = make_iam_client(config)
        for name in users(members):
            client.create_user(UserName=name)
        strict.reset()
        strict.latency = LATENCY
        strict.throttle(rate)
        request = parse_request(
            event("Create", {"GroupName": "Throttled", "Users": users(members)}), ENV
        )
        deadline = Deadline.after(FUNCTION_SECONDS - config.deadline_margin)
        started = time.perf_counter()
        response = Controller(client, MemoryRegistry(), config, deadline).handle(request)
        status = "SUCCESS" if response.ok else f"FAILED ({response.reason[:60]}...)"
        wall = time.perf_counter() - started
        floor = members / rate
        accepted = len(strict.accepted_writes)
    report(f"{label}: result", status, "SUCCESS")
    report(f"{label}: wall / floor ({floor:.0f} s)", f"{wall:.1f} s / {wall / floor:.2f}",
           "<= 1.3" if members >= 1000 else "-")  # fmt: skip
    report(f"{label}: writes accepted / refused", f"{accepted} / {len(strict.throttled)}", "-")
    report(f"{label}: max IAM calls in flight", str(strict.max_in_flight), "<= 8")


def scenario_delete_end_to_end(members: int = 100) -> None:
    """A real moto server, the handler in its own process, the HTTPS receiver: wall time of
    the Delete request from process start to the response CloudFormation would receive."""
    import tempfile

    import boto3

    from jets_deploy_iam_cli.local.receiver import ResponseReceiver
    from processes import run_handler, started_moto_server

    with started_moto_server() as url, tempfile.TemporaryDirectory() as tmp:
        iam = boto3.client("iam", endpoint_url=url)
        names = users(members)
        for name in names:
            iam.create_user(UserName=name)
        base = {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:jets-deploy-iam",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/bench/1",
            "LogicalResourceId": "JetsDeployGroup",
            "ResourceType": "Custom::JetsDeployGroup",
            "ResourceProperties": {"GroupName": "Bench", "Users": names},
        }
        with ResponseReceiver(Path(tmp)) as receiver:
            create = {**base, "RequestType": "Create", "RequestId": "bench-create"}
            run_handler(
                create, receiver, url, Path(tmp), extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}
            )
            delete = {**base, "RequestType": "Delete", "RequestId": "bench-delete",
                      "PhysicalResourceId": "Bench"}  # fmt: skip
            started = time.perf_counter()
            response, _ = run_handler(
                delete, receiver, url, Path(tmp), extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"}
            )
            wall = time.perf_counter() - started
    assert response["Status"] == "SUCCESS", response
    report(
        f"Delete of a {members}-member group, end to end (process + moto server)",
        f"{wall:.2f} s",
        "seconds, no sleeps",
    )


def scenario_drift_check(groups: int = 10, members: int = 100) -> None:
    """One scheduled drift check over registered groups with no drift: its IAM and DynamoDB
    calls (asserted in tests/test_enforce.py) and its wall time under the simulated latency."""
    from jets_deploy_iam import enforce
    from jets_deploy_iam.spec import Environment

    class Quiet:
        def applied(self, change: object) -> None: ...
        def outcome(self, outcome: object) -> None: ...
        def finished(self, summary: object) -> None: ...

    strict = StrictIam()
    with mock_aws(), strict.installed():
        client = make_iam_client()
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "bench-registry")
        registry = DynamoDBRegistry(dynamodb, "bench-registry")
        for name in users(groups * members):
            client.create_user(UserName=name)
        send = controller_sender(client, registry, ReconcileConfig())
        for i in range(groups):
            props = {"GroupName": f"Drift{i:02d}", "Users": users(members, i * members)}
            assert Stack(send, logical_id=f"Drift{i:02d}").create(props).ok
        dynamo = DynamoCalls(dynamodb)
        strict.reset()
        strict.latency = LATENCY
        started = time.perf_counter()
        summary = enforce.run(client, registry, Environment(), enforce.Trigger(), Quiet())
        wall = time.perf_counter() - started
    assert summary.in_sync == groups, summary
    label = f"drift check, {groups} groups of {members} members, no drift"
    report(f"{label}: IAM reads / writes", f"{len(strict.reads)} / {len(strict.writes)}",
           f"{4 * groups} / 0")  # fmt: skip
    calls = ", ".join(f"{n} {c}" for c, n in sorted(collections.Counter(dynamo.calls).items()))
    report(f"{label}: DynamoDB calls", calls, "1 Scan")
    report(f"{label}: wall time", f"{wall:.2f} s", "-")


def _time_import(code: str) -> float:
    script = f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def scenario_cold_start(runs: int = 9) -> None:
    handler = [_time_import("import jets_deploy_iam.handler") for _ in range(runs)]
    with_client = [
        _time_import("import jets_deploy_iam.handler as h; h._clients()") for _ in range(runs)
    ]
    baseline = [_time_import("import boto3; boto3.client('iam')") for _ in range(runs)]
    h, c, b = (statistics.median(x) for x in (handler, with_client, baseline))
    report("cold start: import handler (median of 9)", f"{h * 1000:.0f} ms", "-")
    report("cold start: import handler + its IAM and DynamoDB clients", f"{c * 1000:.0f} ms", "-")
    report("cold start: import boto3 + client('iam')", f"{b * 1000:.0f} ms", "-")
    report("cold start: ratio (import handler / baseline)", f"{h / b:.2f}", "<= 1.3")
    report("cold start: ratio (handler + client / baseline)", f"{c / b:.2f}", "-")


def scenario_continuation(
    members: int = 5000, rate: float = 10.0, timeout: float = 60.0, polling: bool = True
) -> None:
    """A Create too long for one invocation, through continuation: the real handler with a
    ``timeout``-second Lambda context, crhelper's polling rule in moto's EventBridge (the handler
    invoked again with the rule target's Input at each firing, every minute), the registry in
    moto's DynamoDB, the answer PUT to the local HTTPS receiver.

    Time is virtual (tests/virtual_time.py): IAM's token bucket, the call path's waits, the
    Lambda context's remaining time, the wall clock of the registry's leases and budget, and
    EventBridge's firings all run on one clock that moves only when someone waits (concurrent
    waits each move it, so it runs at least as fast as real time would: the figure is an upper
    bound). IAM answers after 20 ms of real time, which the clock does not count (at 10 writes/s
    the bucket's 100 ms a token dominates). Margins scaled to the 60 s timeout: work stops 10 s
    before the end, a failure's undo 5 s before.
    """
    from dataclasses import replace as dc_replace

    from continuation_sim import PREFIX, Cloud, StrictLambda, deploy_function
    from jets_deploy_iam import continuation, handler
    from jets_deploy_iam_cli.local.receiver import ResponseReceiver
    from virtual_time import VirtualClock

    clock = VirtualClock()
    original = ReconcileConfig.from_env.__func__  # type: ignore[attr-defined]

    def from_env(cls: type[ReconcileConfig], environ: object = os.environ) -> ReconcileConfig:
        config: ReconcileConfig = original(cls, environ)
        return dc_replace(config, sleep=clock.sleep, clock=clock.now)

    saved_env = {k: os.environ.get(k) for k in ("JETS_POLL_RULE_PREFIX", "JETS_DEADLINE_MARGIN",
                                                "JETS_UNDO_MARGIN", "SSL_CERT_FILE")}  # fmt: skip
    saved_now, saved_from_env = continuation.now, ReconcileConfig.from_env
    strict = StrictIam()
    label = f"{members:,}-member Create at {rate:g} writes/s, {timeout:g} s function timeout"
    if not polling:
        label += ", no continuation"
    real_started = time.perf_counter()
    try:
        ReconcileConfig.from_env = classmethod(from_env)  # type: ignore[method-assign,assignment]
        continuation.now = clock.now  # type: ignore[assignment]
        os.environ.update(JETS_POLL_RULE_PREFIX=PREFIX, JETS_DEADLINE_MARGIN="10",
                          JETS_UNDO_MARGIN="5")  # fmt: skip
        if not polling:  # as before continuation (and as under sam local)
            del os.environ["JETS_POLL_RULE_PREFIX"]
        with mock_aws(), strict.installed(), ResponseReceiver() as receiver:
            os.environ["SSL_CERT_FILE"] = str(receiver.cafile)
            create_table(boto3.client("dynamodb", region_name="us-east-1"), "bench-registry")
            client = make_iam_client(ReconcileConfig())
            for name in users(members):
                client.create_user(UserName=name)
            deploy_function()
            handler._clients.cache_clear()
            handler.protocol.polling_clients.clear()
            handler.protocol.polling_clients["lambda"] = StrictLambda(boto3.client("lambda"))
            strict.reset()
            strict.latency = LATENCY
            strict.throttle(rate, clock=clock.now)
            cloud = Cloud(receiver, clock, timeout)
            started = clock.now()
            answer = cloud.until_answered(
                event("Create", {"GroupName": "Continued", "Users": users(members)}), most=200
            )
            wall = clock.now() - started
            answers = 1 + receiver.pending
            rules_left = len(cloud.rules())
            permissions_left = len(cloud.permissions())
            handler.protocol.polling_clients.clear()
    finally:
        ReconcileConfig.from_env = saved_from_env  # type: ignore[method-assign]
        continuation.now = saved_now  # type: ignore[assignment]
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    adds = [c.params["UserName"] for c in strict.accepted_writes if c.action == "AddUserToGroup"]
    once = len(adds) == len(set(adds)) == members
    floor = members / rate
    status = answer["Status"] if answer["Status"] == "SUCCESS" else f"FAILED ({answer['Reason']})"
    if not polling:
        report(f"{label}: result", status[:60], "-")
        report(f"{label}: members added", f"{len(set(adds)):,}", "-")
        return
    report(f"{label}: result", status, "SUCCESS")
    report(f"{label}: invocations", str(len(cloud.invocations)), "-")
    exactly = f"{len(set(adds)):,} / {'yes' if once else 'NO'}"
    report(f"{label}: members added / each exactly once", exactly, f"{members:,} / yes")
    report(f"{label}: answers sent", str(answers), "1")
    report(f"{label}: rules / permissions left", f"{rules_left} / {permissions_left}", "0 / 0")
    report(f"{label}: wall (virtual) / floor ({floor:.0f} s)", f"{wall:.0f} s / {wall / floor:.2f}",
           "-")  # fmt: skip
    report(f"{label}: writes accepted / refused", f"{len(strict.accepted_writes)} / "
           f"{len(strict.throttled)}", "-")  # fmt: skip
    report(f"{label}: real time of the simulation", f"{time.perf_counter() - real_started:.0f} s",
           "-")  # fmt: skip


def scenario_continuation_before_after() -> None:
    scenario_continuation(polling=False)
    scenario_continuation()


THROTTLED = [(200, 10.0), (1000, 10.0), (300, 2.0)]
PACING: dict[str, str] = {}  # --pacing: compare the call path's strategies


def scenario_all_throttled() -> None:
    config = ReconcileConfig(**PACING) if PACING else None  # type: ignore[arg-type]
    for members, rate in THROTTLED:
        scenario_throttled(members, rate, config)
    if not PACING:  # the other pacing, once, so the reason for the default stays measured
        print("  -- the same with pacing=aimd (not the default: see callpath.AdaptivePacing)")
        scenario_throttled(200, 10.0, ReconcileConfig(pacing="aimd"))


SCENARIOS = {
    "calls": scenario_calls,
    "throttled": scenario_all_throttled,
    "drift-check": scenario_drift_check,
    "continuation": scenario_continuation_before_after,
    "delete-e2e": scenario_delete_end_to_end,
    "cold-start": scenario_cold_start,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append", help="repeatable")
    parser.add_argument("--pacing", choices=["adaptive", "aimd"], help="throttled: this pacing")
    parser.add_argument("--sizes", help="throttled: members@rate,... e.g. 200@10,300@2")
    parser.add_argument("--progress", action="store_true", help="print the progress log lines")
    args = parser.parse_args(argv)
    if args.pacing:
        PACING["pacing"] = args.pacing
    if args.sizes:
        pairs = (size.split("@") for size in args.sizes.split(","))
        THROTTLED[:] = [(int(members), float(rate)) for members, rate in pairs]
    if args.progress:
        logging.basicConfig(level=logging.WARNING, format="    %(name)s: %(message)s")
        logging.getLogger("jets_deploy_iam").setLevel(logging.INFO)
    print(f"jets-deploy-iam benchmarks (moto + strict IAM layer, {LATENCY * 1000:.0f} ms per call)")
    for name, scenario in SCENARIOS.items():
        if not args.only or name in args.only:
            scenario()
    return 0


if __name__ == "__main__":
    sys.exit(main())
