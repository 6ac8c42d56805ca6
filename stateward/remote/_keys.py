"""Where a state lives on Redis: its name, its keys, and each role's ACL.

Every key of one state lives under ``sw:{<name>}:`` (the braces are a
Redis Cluster hash tag: one slot per state). Names of states, clients and
subscribers are 1-64 of ``A-Z a-z 0-9 . _ -``, so that no name can reach
another's keys.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Final, final

import attrs

from .._errors import InvalidActionError

__all__ = ["Keys", "acl_rules", "check_name", "unique_name"]

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(value: object, what: str) -> str:
    """Check a state's or a client's name: 1-64 of ``A-Z a-z 0-9 . _ -``.

    Raises:
        InvalidActionError: It is not such a name.
    """
    if type(value) is not str or not _NAME_RE.fullmatch(value):
        reason = (
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit (got {value!r})"
        )
        raise InvalidActionError(what, reason)
    return value


@final
@attrs.frozen
class Keys:
    """The Redis keys of one state."""

    name: str = attrs.field(validator=lambda _i, _a, v: check_name(v, "name"))
    """The state's name."""

    @property
    def prefix(self) -> str:
        """``sw:{name}:``."""
        return f"sw:{{{self.name}}}:"

    @property
    def actions(self) -> str:
        """The stream the owner reads requests from."""
        return self.prefix + "actions"

    @property
    def dead(self) -> str:
        """The dead-letter stream: refused entries and why."""
        return self.prefix + "dead"

    def reply(self, client: str) -> str:
        """The stream of *client*'s replies."""
        return self.prefix + "reply:" + check_name(client, "client")

    def deliver(self, subscriber: str) -> str:
        """The stream of a remote subscriber's events."""
        return self.prefix + "deliver:" + check_name(subscriber, "subscriber")

    @property
    def acks(self) -> str:
        """The stream of remote subscribers' Acks (to the owner)."""
        return self.prefix + "acks"

    @property
    def feed(self) -> str:
        """The stream of every released change; entry ids are ``<revision>-0``."""
        return self.prefix + "feed"

    @property
    def owner(self) -> str:
        """The owner's lease: who serves the state now (a string, with a TTL)."""
        return self.prefix + "owner"

    GROUP: Final = "owner"


def acl_rules(name: str, client: str | None = None) -> dict[str, str]:
    """The Redis ACL rules of each role of the state *name*, least privilege.

    Returns ``{role: "ACL SETUSER ..." line}`` for ``owner`` and, with
    *client*, ``client-<client>`` (a sender that may also subscribe and
    watch). Passwords are placeholders (``<password>``): set your own.
    Every role gets only its own keys and the commands it runs.
    """
    keys = Keys(name)
    base = (
        "on ><password> resetkeys resetchannels -@all "
        "+hello +client|setname +ping +info"
    )
    owner = (
        f"ACL SETUSER sw-owner-{name} {base} ~{keys.prefix}* "
        "+xreadgroup +xgroup|create +xack +xadd +xread +xrange +xrevrange +del "
        "+set +get +pexpire"
    )
    rules = {"owner": owner}
    if client is not None:
        check_name(client, "client")
        rules[f"client-{client}"] = (
            f"ACL SETUSER sw-{name}-{client} {base} "
            f"~{keys.actions} ~{keys.reply(client)} ~{keys.acks} "
            f"~{keys.prefix}deliver:* %R~{keys.feed} "
            "+xadd +xread +xrange +xrevrange +del"
        )
    return rules


def unique_name() -> str:
    """A name no other process uses: host, pid and a random part (a valid name)."""
    host = "".join(
        c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname()
    )
    return f"{host[:30] or 'host'}-{os.getpid()}-{os.urandom(3).hex()}"
