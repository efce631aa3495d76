"""`env.network`: wait for the data network and ask the supervisor to shape it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from harness.sync._protocol import NETWORK_INITIALIZED
from netem._shape import LinkShape  # not `netem`: instances need no netlink code

if TYPE_CHECKING:
    from harness.sdk._runenv import RunEnv

INITIALIZED = NETWORK_INITIALIZED  # the SDK's name for it


class NetworkClient:
    """The instance's view of the data network (Testground's network client)."""

    def __init__(self, env: RunEnv) -> None:
        self._env = env

    @property
    def ip(self) -> str | None:
        """This instance's address on the data network."""
        return self._env.data_ip

    @property
    def configurable(self) -> bool:
        """True when the runner can shape links (local:netns)."""
        return self._env.sidecar

    async def wait_initialized(self) -> None:
        """Return once every instance's interface is up (a barrier on 'network-initialized')."""
        await self._env.sync.barrier(INITIALIZED, self._env.instance_count)

    async def configure(
        self,
        default: LinkShape | Mapping[str, Any] | None = None,
        *,
        rules: Iterable[Mapping[str, Any]] = (),
        enabled: bool = True,
        callback_state: str | None = None,
        callback_target: int | None = None,
    ) -> None:
        """Shape this instance's outgoing traffic; returns once the change is applied.

        `rules` are {"peers": [ip, ...], "shape": LinkShape | dict} or {"peers": [...],
        "drop": True}. With `callback_state`, the supervisor signals it once applied, so
        instances can `barrier(callback_state, callback_target)` on each other's changes.
        """
        config: dict[str, Any] = {"enabled": enabled, "rules": [_rule(r) for r in rules]}
        if default is not None:
            config["default"] = _shape(default)
        if callback_state is not None:
            config["callback_state"] = callback_state
            if callback_target is not None:
                config["callback_target"] = callback_target
        await self._env.sync.configure_network(config)


    async def shape_and_wait(
        self,
        shape: LinkShape | None,
        state: str = "shaped",
        *,
        rules: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Shape this instance's outgoing traffic (`shape` and `rules`, as `configure`
        takes them; None: leave it as it is), then wait until every instance has done so:
        a barrier on `state`, which each instance reaches shaped or not, so that a
        composition's groups may shape theirs differently (an unshaped one that waited for
        the shaped ones' signals alone waited for ever). Nothing on a runner that cannot
        shape (`configurable` is False)."""
        if not self.configurable:
            return
        n = self._env.instance_count
        if shape is None:
            await self._env.sync.signal_entry(state)
        else:
            await self.configure(shape, rules=rules, callback_state=state, callback_target=n)
        await self._env.sync.barrier(state, n)


def _shape(shape: LinkShape | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(shape, LinkShape):
        return shape.to_dict()
    return LinkShape.from_dict(shape).to_dict()  # checked here, before it travels


def _rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(rule)
    if "shape" in out:
        out["shape"] = _shape(out["shape"])
    return out
