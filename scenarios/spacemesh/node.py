"""``python -m scenarios.spacemesh.node``: a node (miner, gateway or bootnode)."""

from __future__ import annotations

import os
import sys

import anyio
import orjson

from ._checkpoint import load_checkpoint
from ._cli import (
    LOG_LEVELS,
    MAX_LAYERS,
    ArgumentParser,
    address,
    check_layers,
    configure_logging,
    run_until_signalled,
)
from ._clock import HarnessClock
from ._mesh import MeshParams
from ._node import NodeConfig
from ._services import serve_node
from ._store import Store

PROG = "spacemesh-node"


def data_dir(explicit: str | None, outputs: str | None) -> str | None:
    """Where the node keeps its state: ``--data-dir``, else ``data`` in its outputs (which
    the harness keeps across an instance's restarts), else nowhere (memory only)."""
    if explicit is not None:
        return explicit
    return os.path.join(outputs, "data") if outputs is not None else None


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until SIGINT/SIGTERM."""
    p = ArgumentParser(prog=PROG, description="Spacemesh-style node")
    p.add_argument("--identity", required=True, help="seed of the node's key (its smesher id)")
    p.add_argument("--listen", type=address, required=True, help="gossip host:port")
    p.add_argument("--grpc", type=address, required=True, help="gRPC API host:port")
    p.add_argument("--metrics", type=address, default=None, help="Prometheus host:port")
    p.add_argument("--bootnode", type=address, action="append", default=[], help="repeat")
    p.add_argument("--poet", type=address, action="append", default=[], help="PoET HTTP addr")
    p.add_argument("--poet-key", action="append", default=[], help="trusted PoET key (hex)")
    p.add_argument("--genesis", type=float, default=None, help="Unix time of layer 0")
    p.add_argument("--layer-duration", type=float, default=2.0)
    p.add_argument("--layers-per-epoch", type=int, default=3)
    p.add_argument("--hdist", type=int, default=2)
    p.add_argument("--pow-bits", type=int, default=6)
    p.add_argument("--proposals-per-layer", type=int, default=50, help="expected per layer")
    p.add_argument("--no-smeshing", action="store_true", help="gateway/bootnode only")
    p.add_argument("--num-units", type=int, default=1)
    p.add_argument("--target-peers", type=int, default=6)
    p.add_argument("--outputs", default=None, help="directory for trace.jsonl")
    p.add_argument(
        "--data-dir",
        default=None,
        help="SQLite state directory, kept across restarts (default: OUTPUTS/data with "
        "--outputs, else memory only)",
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint file to recover from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    args = p.parse_args(argv)
    configure_logging(args.log_level)
    clock = HarnessClock.from_environ()  # the real clock outside the harness
    try:
        check_layers(args.layer_duration, args.proposals_per_layer)
        genesis = args.genesis if args.genesis is not None else clock.now()
        if (clock.now() - genesis) / args.layer_duration > MAX_LAYERS:  # False for NaN
            raise ValueError(f"--genesis {args.genesis!r} is more than {MAX_LAYERS} layers "
                             "ago: the node would walk every layer since")
        params = MeshParams(
            layers_per_epoch=args.layers_per_epoch,
            hdist=args.hdist,
            window=max(10, args.hdist),
            pow_bits=args.pow_bits,
            proposals_per_layer=args.proposals_per_layer,
        )
        config = NodeConfig(
            identity=args.identity,
            listen=args.listen,
            genesis=genesis,
            layer_duration=args.layer_duration,
            mesh=params,
            bootnodes=tuple(args.bootnode),
            smeshing=not args.no_smeshing,
            num_units=args.num_units,
            target_peers=args.target_peers,
            poet_keys=tuple(args.poet_key),
            outputs=args.outputs,
            seed=args.seed,
            data_dir=data_dir(args.data_dir, args.outputs),
            checkpoint=args.checkpoint,
        )
        if config.checkpoint is not None:
            load_checkpoint(config.checkpoint)  # bad input: a one-line error before starting
        if config.data_dir is not None:
            Store(config.data_dir).close()
    except ValueError as exc:
        p.error(str(exc))

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            node = await tg.start(
                lambda task_status: serve_node(
                    config,
                    grpc_address=args.grpc,
                    metrics_address=args.metrics,
                    poets=args.poet,
                    clock=clock,
                    task_status=task_status,
                )
            )
            ready = {"event": "ready", "node_id": node.node_id, "smesher": node.smesher_id}
            sys.stdout.write(orjson.dumps(ready).decode() + "\n")
            sys.stdout.flush()

    return run_until_signalled(run, PROG)


if __name__ == "__main__":
    sys.exit(main())
