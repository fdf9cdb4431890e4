"""The `backup-policy` tag: what parses to what, what is refused and how it is said."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.models import VM
from shared.domain.policy import (
    BackupPolicy,
    Cadence,
    PolicyError,
    Regions,
    format_policy,
    parse_policy,
    policy_for,
    policy_from_tags,
)

LONG_CRON = ",".join(["0"] * 50) + " 2 * * *"  # valid, but 107 characters
SERVED = Regions(backup=frozenset({"eastus", "westus2"}), dr=frozenset({"westus2"}))
FULL = "schedule=0 2 * * *;daily=7;weekly=4;monthly=12;replicate=westus2;verify=daily;drtest=weekly"


class TestParse:
    """Valid tag values and the policy each one asks for."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("", BackupPolicy(), id="empty-means-defaults"),
            pytest.param(
                FULL,
                BackupPolicy(replicate="westus2", drtest=Cadence.WEEKLY),
                id="design-example",
            ),
            pytest.param("daily=14;", BackupPolicy(daily=14), id="trailing-semicolon"),
            pytest.param(" daily = 3 ;; weekly=0 ", BackupPolicy(daily=3, weekly=0), id="spaces"),
            pytest.param(
                "schedule=0  */6 * * *", BackupPolicy(schedule="0 */6 * * *"), id="cron-gap"
            ),
            pytest.param("Daily=007", BackupPolicy(daily=7), id="key-case-and-zeros"),
            pytest.param(
                "replicate=WestUS2;verify=Off",
                BackupPolicy(replicate="westus2", verify=Cadence.OFF),
                id="value-case",
            ),
            pytest.param("monthly=1000", BackupPolicy(monthly=1000), id="largest-count"),
            pytest.param("daily=0;weekly=0", BackupPolicy(daily=0, weekly=0), id="only-monthly"),
            pytest.param(
                "schedule=0 2 * jul wed", BackupPolicy(schedule="0 2 * jul wed"), id="l-w-in-names"
            ),
            pytest.param(
                "schedule=0 22-23,0-1 * * sun-sat",
                BackupPolicy(schedule="0 22-23,0-1 * * sun-sat"),
                id="ranges-across-midnight-listed",
            ),
            pytest.param(
                "schedule=50 * * * *", BackupPolicy(schedule="50 * * * *"), id="hourly-at-50"
            ),
            pytest.param(
                "schedule=*/15 * * * *", BackupPolicy(schedule="*/15 * * * *"), id="fleet-tick"
            ),
        ],
    )
    def test_valid_value_parses_to_policy(self, text: str, expected: BackupPolicy) -> None:
        assert parse_policy(text) == expected

    def test_value_of_exactly_256_characters_is_accepted(self) -> None:
        text = "daily=7;" + " " * 248
        assert len(text) == 256
        assert parse_policy(text) == BackupPolicy()


class TestErrors:
    """Every refusal is one line naming the key and value at fault."""

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            pytest.param("daily=x", "daily='x': must be a whole number from 0 to 1000", id="word"),
            pytest.param(
                "daily=-1", "daily='-1': must be a whole number from 0 to 1000", id="minus"
            ),
            pytest.param(
                "weekly=1001", "weekly=1001: must be a whole number from 0 to 1000", id="big"
            ),
            pytest.param("monthly=1.5", "monthly='1.5': must be a whole number", id="fraction"),
            pytest.param(
                "dayly=3",
                "unknown key 'dayly' (did you mean 'daily'? known: schedule, daily, weekly, "
                "monthly, replicate, verify, drtest)",
                id="typo",
            ),
            pytest.param(
                "colour=red",
                "unknown key 'colour' (known: schedule, daily,",
                id="unknown",
            ),
            pytest.param(
                "schedule=0 2 * *",
                "schedule='0 2 * *': not a 5-field cron expression",
                id="4-fields",
            ),
            pytest.param(
                "schedule=0 0 2 * * *",
                "schedule='0 0 2 * * *': not a 5-field cron expression",
                id="seconds-field",
            ),
            pytest.param(
                "schedule=@daily", "schedule='@daily': not a 5-field cron expression", id="alias"
            ),
            pytest.param(
                "schedule=61 2 * * *",
                "schedule='61 2 * * *': not a valid cron expression",
                id="minute-61",
            ),
            pytest.param("schedule=0 0 30 2 *", "schedule='0 0 30 2 *': never fires", id="feb-30"),
            pytest.param(
                "schedule=R 2 * * *", "schedule='R 2 * * *': random (R) and hashed (H)", id="random"
            ),
            pytest.param(
                "schedule=H 2 * * *", "schedule='H 2 * * *': random (R) and hashed (H)", id="hashed"
            ),
            pytest.param(
                f"schedule={LONG_CRON}",
                f"schedule='{LONG_CRON}': longer than 100 characters",
                id="long",
            ),
            pytest.param(
                "schedule=* * * * *",
                "schedule='* * * * *': fires more often than every 15 minutes",
                id="every-minute",
            ),
            pytest.param(
                "schedule=0,10 2 * * *",
                "schedule='0,10 2 * * *': fires more often than every 15 minutes",
                id="ten-minutes-apart",
            ),
            pytest.param(
                "schedule=0 5-1 * * *",
                "schedule='0 5-1 * * *': range 5-1 runs backwards",
                id="reversed-hours",
            ),
            pytest.param(
                "schedule=0 2 * * sat-mon",
                "schedule='0 2 * * sat-mon': range sat-mon runs backwards",
                id="reversed-days",
            ),
            pytest.param(
                "schedule=0 2 L * *", "schedule='0 2 L * *': L, W, # and ? are not", id="last-day"
            ),
            pytest.param(
                "schedule=0 2 15W * *", "schedule='0 2 15W * *': L, W, # and ?", id="weekday"
            ),
            pytest.param(
                "schedule=0 2 * * 5#2", "schedule='0 2 * * 5#2': L, W, # and ?", id="nth-day"
            ),
            pytest.param(
                "schedule=0 2 ? * *", "schedule='0 2 ? * *': L, W, # and ?", id="no-value"
            ),
            pytest.param("schedule=0\t2 * * *", "character U+0009 at position 10", id="tab"),
            pytest.param(
                "schedule=0\u00a02 * * *", "character U+00A0 at position 10", id="no-break-space"
            ),
            pytest.param("daily=7\u2028", "character U+2028 at position 7", id="line-separator"),
            pytest.param(
                "replicate=west us", "replicate='west us': must be an Azure region name", id="space"
            ),
            pytest.param("replicate=", "replicate='': must be an Azure region name", id="empty"),
            pytest.param(
                "verify=sometimes",
                "verify='sometimes': must be one of off|daily|weekly|monthly",
                id="cadence",
            ),
            pytest.param("daily=1;daily=2", "duplicate key 'daily'", id="duplicate"),
            pytest.param("daily=1;DAILY=2", "duplicate key 'daily'", id="duplicate-case"),
            pytest.param("daily", "segment 'daily': expected key=value", id="no-equals"),
            pytest.param("=3", "segment '=3': expected key=value", id="no-key"),
            pytest.param(
                "daily=0;weekly=0;monthly=0",
                "daily=0, weekly=0, monthly=0: would keep nothing; keep at least one",
                id="keeps-nothing",
            ),
            pytest.param("x" * 301, "value is 301 characters; Azure allows 256", id="too-long"),
            pytest.param(
                "daily=1\nweekly=2", "character U+000A at position 7", id="newline-refused"
            ),
        ],
    )
    def test_bad_value_is_refused_with_a_one_line_message(self, text: str, message: str) -> None:
        with pytest.raises(PolicyError) as error:
            parse_policy(text)
        assert str(error.value).startswith(message)
        assert "\n" not in str(error.value)

    def test_direct_construction_validates_too(self) -> None:
        with pytest.raises(PolicyError, match="daily=True: must be a whole number"):
            BackupPolicy(daily=True)


def _cron() -> st.SearchStrategy[str]:
    minute = st.sampled_from(["0", "15", "*/15", "0,30", "5,35"])
    hour = st.sampled_from(["*", "2", "*/6", "1-5", "22"])
    day = st.sampled_from(["*", "1", "1-15", "*/2"])
    month = st.sampled_from(["*", "1", "*/3", "jan"])
    weekday = st.sampled_from(["*", "1", "mon-fri", "0,6", "SUN"])
    return st.tuples(minute, hour, day, month, weekday).map(" ".join)


@st.composite
def policies(draw: st.DrawFn) -> BackupPolicy:
    """Any valid policy (at least one count above zero)."""
    count = st.integers(0, 1000)
    daily, weekly, monthly = draw(st.tuples(count, count, count).filter(any))
    return BackupPolicy(
        schedule=draw(_cron()),
        daily=daily,
        weekly=weekly,
        monthly=monthly,
        replicate=draw(st.none() | st.from_regex(r"[a-z][a-z0-9]{2,31}", fullmatch=True)),
        verify=draw(st.sampled_from(Cadence)),
        drtest=draw(st.sampled_from(Cadence)),
    )


class TestFormat:
    """The canonical form: every key written, in one order, and it round-trips."""

    def test_format_writes_every_key_in_canonical_order(self) -> None:
        assert format_policy(parse_policy(FULL)) == FULL

    def test_default_policy_is_written_in_full_without_replicate(self) -> None:
        assert format_policy(BackupPolicy()) == (
            "schedule=0 2 * * *;daily=7;weekly=4;monthly=12;verify=daily;drtest=off"
        )

    def test_the_longest_canonical_policy_fits_in_a_tag(self) -> None:
        hours = ",".join(str(h) for h in range(24))
        days = ",".join(str(d) for d in range(1, 15))
        schedule = f"0 {hours} {days} * *"  # 100 characters: the most a schedule may have
        longest = BackupPolicy(
            schedule=schedule,
            daily=1000,
            weekly=1000,
            monthly=1000,
            replicate="a" * 32,
            verify=Cadence.MONTHLY,
            drtest=Cadence.MONTHLY,
        )
        assert len(longest.schedule) == 100
        assert len(format_policy(longest)) <= 256

    @settings(max_examples=200)
    @given(policies())
    def test_parse_of_format_round_trips(self, policy: BackupPolicy) -> None:
        assert parse_policy(format_policy(policy)) == policy

    @settings(max_examples=100)
    @given(policies(), st.randoms(use_true_random=False))
    def test_format_of_parse_is_stable_whatever_the_spelling(
        self, policy: BackupPolicy, rng: random.Random
    ) -> None:
        # Respell the canonical form: shuffled keys, stray spaces, upper case, trailing `;`.
        pairs = format_policy(policy).split(";")
        rng.shuffle(pairs)
        text = ";".join(f" {k.upper()} = {v.upper()} " for k, v in (p.split("=") for p in pairs))
        canonical = format_policy(parse_policy(text + ";"))
        assert canonical == format_policy(policy)
        assert format_policy(parse_policy(canonical)) == canonical

    def test_describe_reads_as_a_sentence(self) -> None:
        assert parse_policy(FULL).describe() == (
            "backs up at 02:00 UTC daily; keeps 7 daily, 4 weekly, 12 monthly; "
            "replicates to westus2; verifies daily; DR tests weekly"
        )

    def test_describe_quotes_a_cron_it_cannot_put_in_words(self) -> None:
        policy = BackupPolicy(schedule="0 */6 * * *", verify=Cadence.OFF)
        assert policy.describe() == (
            "backs up on cron '0 */6 * * *' (UTC); keeps 7 daily, 4 weekly, 12 monthly; "
            "does not replicate; never verifies; no DR tests"
        )


def _legacy(**fields: object) -> dict[str, str]:
    return {"azlin:backup-schedule": json.dumps(fields)}


class TestTags:
    """Reading a VM's tags: the new tag, the legacy JSON tag, or nothing."""

    @pytest.mark.parametrize(
        ("tags", "expected"),
        [
            pytest.param({}, None, id="no-tag"),
            pytest.param({"env": "prod"}, None, id="other-tags-only"),
            pytest.param({"backup-policy": "daily=3"}, BackupPolicy(daily=3), id="policy-tag"),
            pytest.param({"Backup-Policy": "daily=3"}, BackupPolicy(daily=3), id="tag-name-case"),
            pytest.param(
                {"backup-policy": "daily=3", **_legacy(daily_retention=9)},
                BackupPolicy(daily=3),
                id="policy-tag-wins-over-legacy",
            ),
            pytest.param(
                _legacy(
                    enabled=True,
                    daily_retention=7,
                    weekly_retention=4,
                    monthly_retention=12,
                    last_daily="2025-12-01T08:00:00+00:00",
                    cross_region_enabled=True,
                    target_region="westus2",
                ),
                BackupPolicy(replicate="westus2"),
                id="legacy-seed-example",
            ),
            pytest.param(
                _legacy(daily_retention=3, cross_region_enabled=False, target_region="westus2"),
                BackupPolicy(daily=3),
                id="legacy-cross-region-off",
            ),
            pytest.param(_legacy(enabled=False, daily_retention=3), None, id="legacy-disabled"),
            pytest.param(
                {"AZLIN:BACKUP-SCHEDULE": "{}"}, BackupPolicy(), id="legacy-defaults-and-case"
            ),
        ],
    )
    def test_tags_give_policy(self, tags: dict[str, str], expected: BackupPolicy | None) -> None:
        assert policy_from_tags(tags) == expected

    @pytest.mark.parametrize(
        ("tags", "message"),
        [
            pytest.param(
                {"azlin:backup-schedule": "{not json"},
                "azlin:backup-schedule: not valid JSON",
                id="malformed-json",
            ),
            pytest.param(
                {"azlin:backup-schedule": "[1]"},
                "azlin:backup-schedule: must be a JSON object, not list",
                id="not-an-object",
            ),
            pytest.param(
                _legacy(daily_retention="x"),
                "daily_retention='x': must be a whole number from 0 to 1000",
                id="legacy-bad-count",
            ),
            pytest.param(
                _legacy(cross_region_enabled=True),
                "target_region=None: must be an Azure region name",
                id="legacy-cross-region-without-region",
            ),
            pytest.param(
                _legacy(enabled="yes"), "enabled='yes': must be true or false", id="legacy-enabled"
            ),
            pytest.param(
                {"backup-policy": "dayly=1", **_legacy()},
                "unknown key 'dayly'",
                id="bad-policy-tag-is-not-hidden-by-legacy",
            ),
        ],
    )
    def test_bad_tags_raise_policy_error(self, tags: dict[str, str], message: str) -> None:
        with pytest.raises(PolicyError) as error:
            policy_from_tags(tags)
        assert str(error.value).startswith(message)


class TestPolicyForVm:
    """A policy is also checked against the VM that carries it."""

    def _vm(self, tags: dict[str, str], location: str = "eastus") -> VM:
        return VM(
            id="/x/vm", name="web", resource_group="rg", location=location, disks=(), tags=tags
        )

    def test_replicating_into_the_vms_own_region_is_misconfigured(self) -> None:
        with pytest.raises(PolicyError, match=r"replicate='eastus': is the VM's own region"):
            policy_for(self._vm({"backup-policy": "replicate=eastus"}), SERVED)

    def test_replicating_elsewhere_is_the_tag_policy(self) -> None:
        policy = policy_for(self._vm({"backup-policy": "replicate=westus2"}), SERVED)
        assert policy == BackupPolicy(replicate="westus2")

    def test_a_vm_without_a_tag_has_no_policy(self) -> None:
        assert policy_for(self._vm({}), SERVED) is None

    @pytest.mark.parametrize("region", ["centralus", "marsnorth"])
    def test_replicating_to_a_region_the_deployment_does_not_serve_is_misconfigured(
        self, region: str
    ) -> None:
        """Infra made backup and DR-test groups in its DR regions only: a replica elsewhere
        has no group to go to (and every later retention run would look for one)."""
        tags = {"backup-policy": f"replicate={region}"}
        with pytest.raises(PolicyError, match=rf"replicate='{region}': not a DR region .*westus2"):
            policy_for(self._vm(tags), SERVED)

    def test_a_vm_in_a_region_the_deployment_does_not_back_up_is_misconfigured(self) -> None:
        tags = {"backup-policy": "daily=7"}
        with pytest.raises(PolicyError, match=r"in centralus, a region this deployment does not"):
            policy_for(self._vm(tags, location="centralus"), SERVED)

    def test_a_deployment_that_names_no_regions_checks_none(self) -> None:
        """The CLI without the app's settings: the app, which has them, still refuses."""
        tags = {"backup-policy": "replicate=centralus"}
        assert policy_for(self._vm(tags), Regions()) == BackupPolicy(replicate="centralus")
