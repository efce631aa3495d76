"""Our spacemesh.v1 API against the real one (github.com/spacemeshos/api 17a6abbe, vendored
in real_api/ under its MIT licence): every message, field, enum value and method we declare
exists there with the same number and type, and a client built from the real definitions
talks to our node over gRPC."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc_tools import protoc
from grpclib.client import Channel
from grpclib.const import Cardinality

from scenarios.spacemesh import _grpc
from scenarios.spacemesh._api import NodeApi
from scenarios.spacemesh._mesh import MeshParams
from scenarios.spacemesh._node import Node, NodeConfig
from scenarios.spacemesh._proto import spacemesh_pb2 as pb
from scenarios.spacemesh._transport import TcpTransport

from .clocks import FixedClock

REAL = Path(__file__).parent / "real_api"
# Our name for a message the real API takes from another package (same wire shape).
RENAMED = {"spacemesh.v1.RpcStatus": "google.rpc.Status"}
STATUS_PROTO = """syntax = "proto3"; package google.rpc; import "google/protobuf/any.proto";
message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
"""


def _strip_http_options(text: str) -> str:
    """The real protos without google.api options (their imports are not vendored)."""
    text = re.sub(r'import "google/api/[^"]+";', "", text)
    text = re.sub(r"option \(google\.api\.http\) = \{[^}]*\};", "", text)
    return re.sub(r"option \(google\.api\.api_visibility\)[^;]*;", "", text)


@pytest.fixture(scope="module")
def real_pool(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pool.DescriptorPool:
    src = tmp_path_factory.mktemp("real")
    (src / "spacemesh/v1").mkdir(parents=True)
    (src / "google/rpc").mkdir(parents=True)
    (src / "google/rpc/status.proto").write_text(STATUS_PROTO)
    names = []
    for path in sorted((REAL / "spacemesh/v1").glob("*.proto")):
        (src / "spacemesh/v1" / path.name).write_text(_strip_http_options(path.read_text()))
        names.append(f"spacemesh/v1/{path.name}")
    out = src / "set.pb"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(["protoc", f"-I{src}", f"-I{well_known}", "--include_imports",
                        f"--descriptor_set_out={out}", *names])  # fmt: skip
    assert code == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return pool


def _messages(desc: Any) -> list[Descriptor]:
    out = []
    for m in desc.message_types_by_name.values():
        out.append(m)
        out.extend(m.nested_types)
    return out


def _repeated(field: FieldDescriptor) -> bool:
    if hasattr(field, "is_repeated"):  # newer protobuf
        return bool(field.is_repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def wire_differences(ours: Descriptor, real: Descriptor) -> list[str]:
    """Where our message would not read or write the real one's bytes."""
    problems = []
    for field in ours.fields:
        theirs = real.fields_by_number.get(field.number)
        where = f"{ours.full_name}.{field.name} = {field.number}"
        if theirs is None:
            problems.append(f"{where}: no such field number in {real.full_name}")
            continue
        if (field.type, _repeated(field)) != (theirs.type, _repeated(theirs)):
            problems.append(f"{where}: type/repeated {field.type}/{_repeated(field)}, real "
                            f"{theirs.type}/{_repeated(theirs)}")  # fmt: skip
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            want = RENAMED.get(field.message_type.full_name, field.message_type.full_name)
            if want != theirs.message_type.full_name:
                problems.append(f"{where}: {want}, real {theirs.message_type.full_name}")
        if field.type == FieldDescriptor.TYPE_ENUM:
            real_values = {v.name: v.number for v in theirs.enum_type.values}
            for v in field.enum_type.values:
                if real_values.get(v.name) != v.number:
                    problems.append(f"{where}: enum {v.name}={v.number} not in the real enum")
    return problems


def test_every_message_we_declare_matches_the_real_one(real_pool: Any) -> None:
    problems = []
    messages = _messages(pb.DESCRIPTOR)
    assert len(messages) > 60
    for ours in messages:
        name = RENAMED.get(ours.full_name, ours.full_name)
        try:
            real = real_pool.FindMessageTypeByName(name)
        except KeyError:
            problems.append(f"{name}: not in the real API")
            continue
        problems += wire_differences(ours, real)
    assert problems == []


def test_every_method_we_serve_has_the_real_signature(real_pool: Any) -> None:
    problems = []
    for service in pb.DESCRIPTOR.services_by_name.values():
        real = real_pool.FindServiceByName(service.full_name)
        for method in service.methods:
            theirs = real.methods_by_name.get(method.name)
            if theirs is None:
                problems.append(f"{service.name}.{method.name}: not in the real API")
                continue
            ours_sig = (method.input_type.full_name, method.output_type.full_name,
                        method.client_streaming, method.server_streaming)  # fmt: skip
            real_sig = (theirs.input_type.full_name, theirs.output_type.full_name,
                        theirs.client_streaming, theirs.server_streaming)  # fmt: skip
            if ours_sig != real_sig:
                problems.append(f"{service.name}.{method.name}: {ours_sig} != {real_sig}")
    assert problems == []


def test_the_comparison_catches_a_renumbered_field(real_pool: Any) -> None:
    """The check fails on a field moved to another number (as our old Layer had)."""
    proto = descriptor_pb2.DescriptorProto()
    pb.Layer.DESCRIPTOR.CopyToProto(proto)
    for field in proto.field:
        if field.name == "root_state_hash":
            field.number = 7
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name="broken.proto", package="spacemesh.v1",
                                              syntax="proto3")  # fmt: skip
    for dep in (pb.LayerNumber, pb.Block, pb.Activation):
        dep.DESCRIPTOR.CopyToProto(file.message_type.add())
    for dep in (pb.ActivationId, pb.SmesherId, pb.AccountId, pb.Transaction, pb.Nonce):
        dep.DESCRIPTOR.CopyToProto(file.message_type.add())
    file.message_type.add().CopyFrom(proto)
    pool.Add(file)
    broken = pool.FindMessageTypeByName("spacemesh.v1.Layer")
    real = real_pool.FindMessageTypeByName("spacemesh.v1.Layer")
    assert wire_differences(broken, real) == [
        "spacemesh.v1.Layer.root_state_hash = 7: no such field number in spacemesh.v1.Layer"
    ]


def _node() -> Node:
    """A node (not running) whose clock is 6 layers past genesis: hdist-old layers are
    decided, empty, with hashes."""
    genesis = time.time() - 100
    config = NodeConfig(identity="wire", listen="127.0.0.1:0", genesis=genesis,
                        layer_duration=10.0, mesh=MeshParams(layers_per_epoch=3))  # fmt: skip
    return Node(config, transport=TcpTransport(), clock=FixedClock(genesis + 65))


def test_a_client_built_from_the_real_protos_talks_to_our_node(real_pool: Any) -> None:
    def cls(name: str) -> Any:
        return message_factory.GetMessageClass(real_pool.FindMessageTypeByName(name))

    async def main() -> None:
        node = _node()
        from grpclib.server import Server

        server = Server(_grpc.node_services(node))
        await server.start("127.0.0.1", 0)
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        channel = Channel("127.0.0.1", port)
        ours = NodeApi("127.0.0.1", port)
        try:
            req = cls("spacemesh.v1.LayersQueryRequest")()
            req.end_layer.number = 6
            async with channel.request(
                "/spacemesh.v1.MeshService/LayersQuery", Cardinality.UNARY_UNARY,
                cls("spacemesh.v1.LayersQueryRequest"), cls("spacemesh.v1.LayersQueryResponse"),
            ) as stream:  # fmt: skip
                await stream.send_message(req, end=True)
                real_reply = await stream.recv_message()
            assert real_reply is not None
            real_layers = [(x.number.number, x.status, x.hash.hex(), x.root_state_hash.hex())
                           for x in real_reply.layer]  # fmt: skip
            mine = [(x.number, x.status, x.hash, x.state_root) for x in await ours.layers(0, 6)]
            assert real_layers == mine
            decided = [x for x in real_reply.layer if x.status]
            assert decided and all(x.hash for x in decided)
            assert cls("spacemesh.v1.Layer").LAYER_STATUS_CONFIRMED in {x.status for x in decided}

            async with channel.request(
                "/spacemesh.v1.NodeService/Status", Cardinality.UNARY_UNARY,
                cls("spacemesh.v1.StatusRequest"), cls("spacemesh.v1.StatusResponse"),
            ) as stream:  # fmt: skip
                await stream.send_message(cls("spacemesh.v1.StatusRequest")(), end=True)
                status = await stream.recv_message()
            assert status.status.top_layer.number == 6
            assert status.status.verified_layer.number == (await ours.status()).verified_layer

            async with channel.request(
                "/spacemesh.v1.MeshService/GenesisTime", Cardinality.UNARY_UNARY,
                cls("spacemesh.v1.GenesisTimeRequest"), cls("spacemesh.v1.GenesisTimeResponse"),
            ) as stream:  # fmt: skip
                await stream.send_message(cls("spacemesh.v1.GenesisTimeRequest")(), end=True)
                genesis = await stream.recv_message()
            assert genesis.unixtime.value == int(node.config.genesis)

            req = cls("spacemesh.v1.SubmitTransactionRequest")(transaction=b"\x00junk")
            async with channel.request(
                "/spacemesh.v1.TransactionService/SubmitTransaction", Cardinality.UNARY_UNARY,
                cls("spacemesh.v1.SubmitTransactionRequest"),
                cls("spacemesh.v1.SubmitTransactionResponse"),
            ) as stream:  # fmt: skip
                await stream.send_message(req, end=True)
                submitted = await stream.recv_message()
            # google.rpc.Status read from our RpcStatus: junk is rejected with a reason.
            assert submitted.status.code != 0 and submitted.status.message
            assert submitted.txstate.state == 1  # TRANSACTION_STATE_REJECTED
        finally:
            ours.close()
            channel.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
