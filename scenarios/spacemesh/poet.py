"""``python -m scenarios.spacemesh.poet``: a PoET server with its HTTP API."""

from __future__ import annotations

import sys

import anyio
import orjson

from ._cli import LOG_LEVELS, ArgumentParser, address, configure_logging, run_until_signalled
from ._clock import HarnessClock
from ._poet import PoetConfig, PoetError
from ._poet_store import PoetStore
from ._services import serve_poet

PROG = "spacemesh-poet"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until SIGINT/SIGTERM."""
    parser = ArgumentParser(prog=PROG, description="PoET server (HTTP API, gRPC broadcast)")
    parser.add_argument("--listen", type=address, required=True, help="HTTP API host:port")
    parser.add_argument("--genesis", type=float, default=None, help="Unix time of layer 0")
    parser.add_argument("--round-duration", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--chain-length", type=int, default=1000, help="hash chain length")
    parser.add_argument(
        "--gateway",
        type=address,
        action="append",
        default=[],
        help="gateway gRPC host:port (repeat); starts rounds at once",
    )
    parser.add_argument("--ack-threshold", type=int, default=1, help="gateways that must ack")
    parser.add_argument("--key-seed", default="poet-0", help="seed of the service key")
    parser.add_argument("--data-dir", help="keep rounds and proofs here across restarts "
                        "(default: memory only)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    clock = HarnessClock.from_environ()  # the real clock outside the harness
    try:
        config = PoetConfig(
            genesis=args.genesis if args.genesis is not None else clock.now(),
            round_duration=args.round_duration,
            chain_length=args.chain_length,
            ack_threshold=args.ack_threshold,
            key_seed=args.key_seed,
            data_dir=args.data_dir,
        )
        if args.data_dir is not None:
            PoetStore(args.data_dir).close()  # an unusable one is refused here, in one line
    except (PoetError, ValueError) as exc:
        parser.error(str(exc))

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            service = await tg.start(
                lambda task_status: serve_poet(config, args.listen, args.gateway or None,
                                               clock=clock, task_status=task_status)
            )
            ready = {"event": "ready", "listen": args.listen, "pubkey": service.public_key}
            sys.stdout.write(orjson.dumps(ready).decode() + "\n")
            sys.stdout.flush()

    return run_until_signalled(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
