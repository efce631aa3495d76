"""An instance that registers (its start event and one signal) and ends."""

from harness import sdk


async def register(env: sdk.RunEnv) -> None:
    """Signal 'registered' and return."""
    await env.sync.signal_entry("registered")
