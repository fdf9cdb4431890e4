"""The local durable host runs toy DFApps through the real azure-functions-durable executor."""

# azure-functions-durable ships no type information, so its decorators are untyped.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as Kind
from azure.functions.timer import TimerRequest

from shared.clock import VirtualClock
from shared.runner import (
    HostConfigError,
    InstanceExistsError,
    LocalDurableHost,
    UnknownFunctionError,
    run_to_completion,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=3)
Context = Any  # df.DurableOrchestrationContext, untyped
Steps = Generator[Any, Any, Any]

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
failures_left: dict[str, int] = {}
replays: list[int] = []
calls: dict[str, int] = {}
observed_host: LocalDurableHost | None = None
running = {"now": 0, "peak": 0}
running_lock = threading.Lock()
pair = threading.Barrier(2)


@app.orchestration_trigger(context_name="context")
def chain(context: Context) -> Steps:
    first = yield context.call_activity("greet", context.get_input())
    context.set_custom_status({"step": 1})
    second = yield context.call_activity("greet", first)
    return [first, second]


@app.orchestration_trigger(context_name="context")
def fan_out(context: Context) -> Steps:
    results = yield context.task_all([context.call_activity("paired", n) for n in range(6)])
    return sorted(results)


@app.orchestration_trigger(context_name="context")
def with_retry(context: Context) -> Steps:
    result = yield context.call_activity_with_retry("flaky", RETRY, context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def parent(context: Context) -> Steps:
    good = yield context.call_sub_orchestrator("chain", "kid", "parent-kid")
    try:
        yield context.call_sub_orchestrator("with_retry", "doomed")
    except Exception as exc:
        return {"good": good, "caught": str(exc)}
    return {"good": good}


@app.orchestration_trigger(context_name="context")
def sleeper(context: Context) -> Steps:
    hours = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=hours))
    return context.current_utc_datetime.isoformat()


@app.orchestration_trigger(context_name="context")
def race(context: Context) -> Steps:
    deadline = context.create_timer(context.current_utc_datetime + timedelta(days=1))
    approval = context.wait_for_external_event("approval")
    winner = yield context.task_any([approval, deadline])
    if winner == approval:
        deadline.cancel()
        return approval.result
    return "timed out"


@app.orchestration_trigger(context_name="context")
def fickle(context: Context) -> Steps:
    replays.append(1)
    yield context.call_activity("greet" if len(replays) == 1 else "paired", 1)
    yield context.call_activity("greet", 2)
    return "never"


@app.orchestration_trigger(context_name="context")
def adopter(context: Context) -> Steps:
    """Starts a sleeper under a fixed id: two adopters collide on it."""
    result = yield context.call_sub_orchestrator("sleeper", context.get_input(), "shared-kid")
    return result


@app.orchestration_trigger(context_name="context")
def mistaken(context: Context) -> Steps:
    try:
        yield context.call_activity("no_such_activity", 1)
    except Exception:
        return "caught"
    return "ran"


@app.orchestration_trigger(context_name="context")
def brood(context: Context) -> Steps:
    """A task_all over children of which one fails at once and the others take hours."""
    kids = [context.call_sub_orchestrator("sleeper", hours) for hours in (1, 5)]
    kids.append(context.call_sub_orchestrator("with_retry", "brood-doomed"))
    try:
        yield context.task_all(kids)
    except Exception:
        seen = yield context.call_activity("children_states", context.instance_id)
        return {"failed": True, "seen": seen, "at": context.current_utc_datetime.isoformat()}
    return {"failed": False}


@app.orchestration_trigger(context_name="context")
def chatty(context: Context) -> Steps:
    context.set_custom_status({"log": "x" * (16 * 1024)})
    yield context.call_activity("greet", "after")
    return "never"


@app.orchestration_trigger(context_name="context")
def impatient(context: Context) -> Steps:
    result = yield context.call_activity("slow", context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def bystander(context: Context) -> Steps:
    yield context.call_activity("pause", 0.8)
    result = yield context.call_activity("counted", "bystander")
    return result


@app.orchestration_trigger(context_name="context")
def counter(context: Context) -> Steps:
    """Counts to its input's goal one generation at a time, each after a timer and a call."""
    state = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
    greeting = yield context.call_activity("greet", str(state["at"]))
    seen = [*state["seen"], greeting]
    if state["at"] + 1 < state["goal"]:
        context.continue_as_new({"at": state["at"] + 1, "goal": state["goal"], "seen": seen})
        return None
    return seen


@app.orchestration_trigger(context_name="context")
def parent_of_counter(context: Context) -> Steps:
    seen = yield context.call_sub_orchestrator("counter", {"at": 0, "goal": 2, "seen": []})
    return seen


@app.orchestration_trigger(context_name="context")
def restless(context: Context) -> Steps:
    """Round 0 races a 5-hour child against a minute and continues as new when the minute wins;
    round 1 waits ten hours, long after the child has answered."""
    now = context.current_utc_datetime
    if context.get_input() == 0:
        child = context.call_sub_orchestrator("sleeper", 5, "restless-kid")
        yield context.task_any([child, context.create_timer(now + timedelta(minutes=1))])
        context.continue_as_new(1)
        return None
    yield context.create_timer(now + timedelta(hours=10))
    return "rested"


@app.activity_trigger(input_name="seconds")
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@app.activity_trigger(input_name="seconds")
def pause(seconds: float) -> str:
    time.sleep(seconds)
    return "paused"


@app.activity_trigger(input_name="key")
def counted(key: str) -> int:
    calls[key] = calls.get(key, 0) + 1
    time.sleep(0.6)
    return calls[key]


@app.activity_trigger(input_name="parent")
def children_states(parent: str) -> dict[str, str]:
    assert observed_host is not None
    return {
        st.instance_id: st.runtime_status
        for st in observed_host.instances()
        if st.instance_id.startswith(parent + ":")
    }


@app.activity_trigger(input_name="name")
def greet(name: str) -> str:
    return f"hello {name}"


@app.activity_trigger(input_name="n")
def paired(n: int) -> int:
    with running_lock:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
    with contextlib.suppress(threading.BrokenBarrierError):
        pair.wait(timeout=5)  # returns at once only when two activities run side by side
    with running_lock:
        running["now"] -= 1
    return n


@app.activity_trigger(input_name="key")
def flaky(key: str) -> str:
    if failures_left.get(key, 0) > 0:
        failures_left[key] -= 1
        raise RuntimeError(f"{key} is not ready")
    return f"{key} done"


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    instance_id = req.params.get("id")
    iid = await client.start_new(req.route_params["name"], instance_id, req.get_json())
    response: func.HttpResponse = client.create_check_status_response(req, iid)
    return response


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def host(clock: VirtualClock, tmp_path: Path) -> Iterator[LocalDurableHost]:
    host_json = tmp_path / "host.json"
    host_json.write_text(
        json.dumps({"extensions": {"durableTask": {"maxConcurrentActivityFunctions": 2}}})
    )
    with LocalDurableHost(app, clock, host_json=host_json) as running_host:
        yield running_host


def kinds(host: LocalDurableHost, instance_id: str) -> list[Kind]:
    """The instance's history without the episode markers."""
    episode = {Kind.ORCHESTRATOR_STARTED, Kind.ORCHESTRATOR_COMPLETED}
    return [
        Kind(e["EventType"]) for e in host.history(instance_id) if e["EventType"] not in episode
    ]


class TestOrchestrations:
    """Chains, fan-out, retries, sub-orchestrations and timers run to their end."""

    def test_chain_passes_each_result_on_and_reports_custom_status(
        self, host: LocalDurableHost
    ) -> None:
        iid = host.start("chain", input="ada")
        host.run_until_idle()

        status = host.status(iid)
        assert status.runtime_status == "Completed"
        assert status.output == ["hello ada", "hello hello ada"]
        assert status.input == "ada"
        assert status.custom_status == {"step": 1}

    def test_fan_out_runs_activities_side_by_side_up_to_the_host_json_limit(
        self, host: LocalDurableHost
    ) -> None:
        running["peak"] = 0
        iid = host.start("fan_out")
        host.run_until_idle()

        assert host.status(iid).output == [0, 1, 2, 3, 4, 5]
        assert host.max_activities == 2
        assert running["peak"] == 2

    def test_retry_follows_the_sdk_event_sequence_with_backoff_on_the_virtual_clock(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        failures_left["twice"] = 2
        iid = host.start("with_retry", input="twice")
        host.run_until_idle()

        assert host.status(iid).output == "twice done"
        attempt_failed = [Kind.TASK_SCHEDULED, Kind.TASK_FAILED, Kind.TIMER_CREATED]
        assert kinds(host, iid) == [
            Kind.EXECUTION_STARTED,
            *attempt_failed,
            Kind.TIMER_FIRED,
            *attempt_failed,
            Kind.TIMER_FIRED,
            Kind.TASK_SCHEDULED,
            Kind.TASK_COMPLETED,
            Kind.EXECUTION_COMPLETED,
        ]
        assert clock.now() == START + timedelta(seconds=60)

    def test_exhausted_retries_fail_the_orchestration_with_the_activity_message(
        self, host: LocalDurableHost
    ) -> None:
        failures_left["never"] = 99
        iid = host.start("with_retry", input="never")
        host.run_until_idle()

        status = host.status(iid)
        assert status.runtime_status == "Failed"
        assert status.output.startswith("Orchestrator function 'with_retry' failed:")
        assert "Activity function 'flaky' failed: RuntimeError: never is not ready" in status.output
        assert failures_left["never"] == 96

    def test_sub_orchestrations_report_results_and_failures_to_their_parent(
        self, host: LocalDurableHost
    ) -> None:
        failures_left["doomed"] = 99
        iid = host.start("parent")
        host.run_until_idle()

        output = host.status(iid).output
        assert output["good"] == ["hello kid", "hello hello kid"]
        assert "Orchestrator function 'with_retry' failed" in output["caught"]
        children = {st.instance_id: st.runtime_status for st in host.instances()}
        assert children["parent-kid"] == "Completed"
        assert children[f"{iid}:0001"] == "Failed"

    def test_durable_timer_moves_the_virtual_clock_to_its_fire_time(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        iid = host.start("sleeper", input=240)  # ten days: the SDK splits it into short timers
        host.run_until_idle()

        fired_at = START + timedelta(days=10)
        assert host.status(iid).output == fired_at.isoformat()
        assert clock.now() == fired_at

    def test_max_virtual_seconds_leaves_later_timers_pending(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        iid = host.start("sleeper", input=2)
        host.run_until_idle(max_virtual_seconds=3600)

        assert host.status(iid).runtime_status == "Running"
        assert clock.now() == START

    def test_event_wins_the_race_and_its_cancelled_timer_does_not_hold_time(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        iid = host.start("race")
        host.run_until_idle(max_virtual_seconds=60)
        host.raise_event(iid, "approval", {"by": "ops"})
        host.run_until_idle()

        assert host.status(iid).output == {"by": "ops"}
        assert clock.now() == START

    def test_replay_that_differs_from_history_fails_as_nondeterministic(
        self, host: LocalDurableHost
    ) -> None:
        replays.clear()
        iid = host.start("fickle")
        host.run_until_idle()

        status = host.status(iid)
        assert status.runtime_status == "Failed"
        assert "NonDeterministic" in status.output
        assert "CALL_ACTIVITY(greet" in status.output


class TestContinueAsNew:
    """`continue_as_new` starts the next execution under the same id, with a fresh history."""

    def test_each_generation_starts_over_with_its_input_and_the_last_one_answers(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        iid = host.start("counter", input={"at": 0, "goal": 3, "seen": []})
        host.run_until_idle()

        status = host.status(iid)
        assert status.runtime_status == "Completed"
        assert status.output == ["hello 0", "hello 1", "hello 2"]
        assert status.input == {"at": 2, "goal": 3, "seen": ["hello 0", "hello 1"]}
        assert clock.now() == START + timedelta(minutes=3)
        # Only the last generation's events: one timer, one call, not three of each.
        assert kinds(host, iid).count(Kind.TIMER_FIRED) == 1
        assert kinds(host, iid).count(Kind.TASK_COMPLETED) == 1

    def test_a_sub_orchestration_that_continues_as_new_answers_its_parent_once_done(
        self, host: LocalDurableHost
    ) -> None:
        iid = host.start("parent_of_counter")
        host.run_until_idle()

        assert host.status(iid).output == ["hello 0", "hello 1"]

    def test_a_child_of_an_earlier_execution_answers_into_the_void(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        iid = host.start("restless", input=0)
        host.run_until_idle()

        assert host.status(iid).output == "rested"
        assert host.status("restless-kid").runtime_status == "Completed"
        assert Kind.SUB_ORCHESTRATION_INSTANCE_COMPLETED not in kinds(host, iid)
        assert clock.now() == START + timedelta(minutes=1, hours=10)


class TestAzureStorageStrictness:
    """Where the extension on Azure Storage is stricter than a naive host, this one is too."""

    def test_a_sub_orchestration_start_on_a_running_id_replaces_it_and_its_parent_waits_forever(
        self, host: LocalDurableHost
    ) -> None:
        first = host.start("adopter", input=48)
        host.run_until_idle(max_virtual_seconds=3600)
        second = host.start("adopter", input=1)
        host.run_until_idle()

        assert host.status(second).runtime_status == "Completed"
        assert host.status(first).runtime_status == "Running"  # never told, as in Azure
        assert host.replaced == ["shared-kid"]

    def test_a_call_to_a_missing_activity_fails_the_whole_orchestration_not_the_task(
        self, host: LocalDurableHost
    ) -> None:
        iid = host.start("mistaken")
        host.run_until_idle()

        status = host.status(iid)
        assert status.runtime_status == "Failed"
        assert "The function 'no_such_activity' doesn't exist" in status.output

    def test_task_all_resumes_only_when_every_child_has_finished_even_after_a_failure(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        global observed_host
        observed_host = host
        failures_left["brood-doomed"] = 99
        iid = host.start("brood")
        host.run_until_idle()

        output = host.status(iid).output
        assert output["failed"] is True
        assert sorted(output["seen"].values()) == ["Completed", "Completed", "Failed"]
        assert datetime.fromisoformat(output["at"]) >= START + timedelta(hours=5)

    def test_several_completions_arrive_in_one_episode(self, host: LocalDurableHost) -> None:
        """Whether two completions land before the next episode depends on thread scheduling
        (on a loaded machine each may wake the host alone): a few runs must show it once."""
        most = 0
        for _ in range(5):
            iid = host.start("fan_out")
            host.run_until_idle()
            assert host.status(iid).output == [0, 1, 2, 3, 4, 5]
            per_episode: list[int] = []
            for event in host.history(iid):
                if event["EventType"] == Kind.ORCHESTRATOR_STARTED:
                    per_episode.append(0)
                elif event["EventType"] == Kind.TASK_COMPLETED:
                    per_episode[-1] += 1
            most = max(most, *per_episode)
            if most >= 2:
                break
        assert most >= 2

    def test_the_timer_after_the_final_failed_attempt_fires_at_once(
        self, host: LocalDurableHost, clock: VirtualClock
    ) -> None:
        failures_left["hopeless"] = 99
        iid = host.start("with_retry", input="hopeless")
        host.run_until_idle()

        assert host.status(iid).runtime_status == "Failed"
        assert clock.now() == START + timedelta(seconds=60)  # two backoffs of three attempts

    def test_a_custom_status_over_16_kb_fails_the_orchestration(
        self, host: LocalDurableHost
    ) -> None:
        iid = host.start("chatty")
        host.run_until_idle()

        status = host.status(iid)
        assert status.runtime_status == "Failed"
        assert "must not exceed 16 KB" in status.output

    def test_an_activity_past_function_timeout_fails_and_the_restart_redelivers_the_others(
        self, clock: VirtualClock
    ) -> None:
        calls.clear()
        with LocalDurableHost(app, clock, function_timeout=timedelta(seconds=1.2)) as host:
            stuck = host.start("impatient", input=1.6)
            other = host.start("bystander")
            host.run_until_idle()

            stuck_status = host.status(stuck)
            assert stuck_status.runtime_status == "Failed"
            assert "Timeout value of 00:00:01 exceeded by function 'Functions.slow'" in (
                stuck_status.output
            )
            assert host.status(other).output == 2  # its first run died with the worker

    def test_at_least_once_delivery_runs_each_successful_activity_twice(
        self, clock: VirtualClock
    ) -> None:
        calls.clear()
        with LocalDurableHost(app, clock, at_least_once=True) as host:
            iid = host.start("bystander")
            host.run_until_idle()

            assert host.status(iid).output == 2
            assert calls == {"bystander": 2}

    def test_function_timeout_is_read_from_host_json(
        self, clock: VirtualClock, tmp_path: Path
    ) -> None:
        host_json = tmp_path / "host.json"
        host_json.write_text(json.dumps({"functionTimeout": "00:10:00"}))

        assert LocalDurableHost(app, clock, host_json=host_json).function_timeout == timedelta(
            minutes=10
        )


class TestRedeploy:
    """New code deployed under in-flight instances: they replay against it."""

    @staticmethod
    def _app(steps: tuple[str, ...]) -> df.DFApp:
        new = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @new.orchestration_trigger(context_name="context")
        def long_job(context: Context) -> Steps:
            done = []
            for step in steps:
                yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
                done.append((yield context.call_activity(step, step)))
            return done

        for name in ("first", "second", "third"):
            new.activity_trigger(input_name="value")(_echo(name))
        return new

    def test_an_in_flight_instance_finishes_on_code_that_only_adds_later_steps(
        self, clock: VirtualClock
    ) -> None:
        with LocalDurableHost(self._app(("first", "second")), clock) as host:
            iid = host.start("long_job")
            host.run_until_idle(max_virtual_seconds=5400)  # first step done, second not yet
            host.redeploy(self._app(("first", "second", "third")))
            host.run_until_idle()

            assert host.status(iid).output == ["first", "second", "third"]

    def test_code_that_changes_a_step_already_taken_fails_the_instance_as_nondeterministic(
        self, clock: VirtualClock
    ) -> None:
        with LocalDurableHost(self._app(("first", "second")), clock) as host:
            iid = host.start("long_job")
            host.run_until_idle(max_virtual_seconds=5400)
            host.redeploy(self._app(("third", "second")))
            host.run_until_idle()

            status = host.status(iid)
            assert status.runtime_status == "Failed"
            assert "NonDeterministicOrchestrationException" in status.output


def _echo(name: str) -> Any:
    def step(value: str) -> str:
        return value

    step.__name__ = step.__qualname__ = name
    return step


class TestClient:
    """The real DurableOrchestrationClient works against the host's loopback endpoint."""

    def test_http_starter_answers_202_with_status_urls_on_the_endpoint(
        self, host: LocalDurableHost
    ) -> None:
        req = func.HttpRequest("POST", "http://localhost:7071/api/start/chain", body=b'"bo"')
        response = host.call_http("http_start", req)
        links = json.loads(response.get_body())
        host.run_until_idle()

        assert response.status_code == 202
        assert response.headers["Location"] == links["statusQueryGetUri"]
        with urllib.request.urlopen(links["statusQueryGetUri"]) as answer:  # noqa: S310
            status = json.loads(answer.read())
        assert status["runtimeStatus"] == "Completed"
        assert status["output"] == ["hello bo", "hello hello bo"]

    def test_starting_a_running_instance_id_fails_and_a_finished_one_is_replaced(
        self, host: LocalDurableHost
    ) -> None:
        host.start("sleeper", input=1, instance_id="slot-1")
        with pytest.raises(InstanceExistsError):
            host.start("sleeper", input=1, instance_id="slot-1")
        client = df.DurableOrchestrationClient(host.client_binding())
        with pytest.raises(Exception, match="already exists"):
            run_to_completion(client.start_new("sleeper", "slot-1", 1))

        host.run_until_idle()
        assert host.start("chain", input="again", instance_id="slot-1") == "slot-1"
        host.run_until_idle()
        assert host.status("slot-1").name == "chain"

    def test_client_raises_events_reads_status_and_terminates(self, host: LocalDurableHost) -> None:
        waiting, doomed = host.start("race"), host.start("race")
        host.run_until_idle(max_virtual_seconds=1)
        client = df.DurableOrchestrationClient(host.client_binding())

        async def drive() -> str:
            await client.raise_event(waiting, "approval", "yes")
            await client.terminate(doomed, "not needed")
            status = await client.get_status(doomed)
            return str(status.runtime_status.value)

        assert run_to_completion(drive()) == "Terminated"
        host.run_until_idle(max_virtual_seconds=1)
        assert host.status(waiting).output == "yes"
        assert host.status(doomed).output == "not needed"

    def test_unknown_orchestrator_is_refused_with_its_name(self, host: LocalDurableHost) -> None:
        with pytest.raises(UnknownFunctionError, match="'nope' doesn't exist"):
            host.start("nope")


PAGED = [f"i{n:03d}" for n in range(250)]


class TestInstanceQueries:
    """Status queries come a page at a time, as the extension answers them."""

    @pytest.fixture(autouse=True)
    def pending(self, host: LocalDurableHost) -> None:
        for instance_id in reversed(PAGED):  # pages follow instance ids, not creation order
            host.start("chain", input="x", instance_id=instance_id)

    def test_pages_hold_100_instances_and_a_token_leads_to_the_next(
        self, host: LocalDurableHost
    ) -> None:
        pages = read_pages(host, "instances/")
        assert [len(page) for page in pages] == [100, 100, 50]
        assert [i for page in pages for i in page] == PAGED

    def test_top_sets_the_page_size_after_the_filters(self, host: LocalDurableHost) -> None:
        pages = read_pages(host, "instances/?instanceIdPrefix=i1&runtimeStatus=Pending&top=40")
        assert [len(page) for page in pages] == [40, 40, 20]
        assert [i for page in pages for i in page] == PAGED[100:200]

    def test_the_sdk_reads_the_first_page_only(self, host: LocalDurableHost) -> None:
        client = df.DurableOrchestrationClient(host.client_binding())
        every = run_to_completion(client.get_status_all())
        pending = run_to_completion(
            client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Pending])
        )
        assert [s.instance_id for s in every] == PAGED[:100]
        assert [s.instance_id for s in pending] == PAGED[:100]

    def test_a_purge_without_created_time_from_is_refused(self, host: LocalDurableHost) -> None:
        url = json.loads(host.client_binding())["rpcBaseUrl"] + "instances/?runtimeStatus=Pending"
        request = urllib.request.Request(url, method="DELETE")  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)  # noqa: S310
        assert refused.value.code == 400
        assert len(host.instances()) == len(PAGED)


def read_pages(host: LocalDurableHost, query: str) -> list[list[str]]:
    """Every page of an instance query over HTTP, following the continuation token."""
    url = json.loads(host.client_binding())["rpcBaseUrl"] + query
    pages: list[list[str]] = []
    token = None
    while token is not None or not pages:
        request = urllib.request.Request(url)  # noqa: S310
        if token:
            request.add_header("x-ms-continuation-token", token)
        with urllib.request.urlopen(request) as answer:  # noqa: S310
            pages.append([status["instanceId"] for status in json.loads(answer.read())])
            token = answer.headers.get("x-ms-continuation-token")
    return pages


timer_app = df.DFApp()
ticks: list[str] = []


@timer_app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer")
@timer_app.durable_client_input(client_name="client")
async def every_quarter(timer: TimerRequest, client: df.DurableOrchestrationClient) -> None:
    ticks.append(timer.schedule_status["Next"])
    await client.start_new("nap", None, None)


@timer_app.orchestration_trigger(context_name="context")
def nap(context: Context) -> Steps:
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=20))
    return context.current_utc_datetime.isoformat()


class TestTimerTriggers:
    """Timer triggers fire on their NCRONTAB schedule over a span of virtual time."""

    def test_timer_trigger_fires_on_schedule_interleaved_with_durable_timers(
        self, clock: VirtualClock
    ) -> None:
        ticks.clear()
        settings = {"TICK_SCHEDULE": "0 */15 * * * *"}
        with LocalDurableHost(timer_app, clock, settings=settings) as host:
            host.run_timers(until=START + timedelta(hours=1))
            finished = sorted(st.output for st in host.instances() if st.output)

        assert len(ticks) == 4
        assert clock.now() == START + timedelta(hours=1)
        # each nap started at a tick and woke 20 minutes later; the last is still asleep
        assert finished == [(START + timedelta(minutes=m)).isoformat() for m in (35, 50)]

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            pytest.param({}, "TICK_SCHEDULE, which is not set", id="missing-setting"),
            pytest.param({"TICK_SCHEDULE": "0 2 * * *"}, "6-field NCRONTAB", id="five-fields"),
        ],
    )
    def test_unusable_schedule_is_refused_when_the_host_is_built(
        self, clock: VirtualClock, settings: dict[str, str], message: str
    ) -> None:
        with pytest.raises(HostConfigError, match=message):
            LocalDurableHost(timer_app, clock, settings=settings)
