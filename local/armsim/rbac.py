"""Azure RBAC's evaluation: roles of Actions/NotActions with wildcards, assigned at scopes.

As ARM evaluates it: an action is allowed when some role assigned at the request's scope or
above lists it in Actions and the same role does not list it in NotActions (NotActions only
subtract from their own role; they deny nothing another role grants). Action names compare
case-insensitively and `*` matches any run of characters, `/` included.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The subscription and resource group a scope (or resource id) lies in.
_SCOPE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+))?(?:/|$)", re.IGNORECASE
)


@functools.cache
def _pattern(action: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in action.split("*")), re.IGNORECASE)


def matches(pattern: str, action: str) -> bool:
    """Whether a role's action entry (wildcards allowed) names `action`."""
    return _pattern(pattern).fullmatch(action) is not None


@dataclass(frozen=True)
class Role:
    """A role definition: its name and permissions (control plane only)."""

    name: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()

    def permits(self, action: str) -> bool:
        return any(matches(p, action) for p in self.actions) and not any(
            matches(p, action) for p in self.not_actions
        )


@dataclass(frozen=True)
class Assignment:
    """A role assigned at a subscription (`group` None) or at every resource group whose name
    fits `group`, a template such as "rg-backups-{region}" (one group per region)."""

    role: Role
    group: str | None = None

    def covers(self, scope: str, group_exists: Callable[[str, str], bool]) -> bool:
        """Whether `scope` lies at or under this assignment's scope.

        A group assignment needs the group to exist: Azure assigns roles on groups, so a group
        nobody created holds no assignment (ARM then answers "or the scope is invalid").
        """
        found = _SCOPE.match(scope)
        if found is None:
            return False
        if self.group is None:
            return True
        group = found["rg"]
        return (
            group is not None
            and _group_pattern(self.group).fullmatch(group) is not None
            and group_exists(found["sub"], group)
        )


@functools.cache
def _group_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(r"\{region\}", "[^/]+"), re.IGNORECASE)


@dataclass(frozen=True)
class Principal:
    """An identity ARM knows: how its errors name it, and what it is assigned."""

    client: str
    object_id: str
    assignments: Sequence[Assignment]

    def allowed(self, action: str, scope: str, group_exists: Callable[[str, str], bool]) -> bool:
        return any(
            a.role.permits(action) and a.covers(scope, group_exists) for a in self.assignments
        )
