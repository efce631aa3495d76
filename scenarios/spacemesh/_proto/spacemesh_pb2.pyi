# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("connected_peers", "is_synced", "synced_layer", "top_layer", "verified_layer", "applied_layer", "node_id")
    CONNECTED_PEERS_FIELD_NUMBER: _ClassVar[int]
    IS_SYNCED_FIELD_NUMBER: _ClassVar[int]
    SYNCED_LAYER_FIELD_NUMBER: _ClassVar[int]
    TOP_LAYER_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_LAYER_FIELD_NUMBER: _ClassVar[int]
    APPLIED_LAYER_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    connected_peers: int
    is_synced: bool
    synced_layer: int
    top_layer: int
    verified_layer: int
    applied_layer: int
    node_id: str
    def __init__(self, connected_peers: _Optional[int] = ..., is_synced: _Optional[bool] = ..., synced_layer: _Optional[int] = ..., top_layer: _Optional[int] = ..., verified_layer: _Optional[int] = ..., applied_layer: _Optional[int] = ..., node_id: _Optional[str] = ...) -> None: ...

class CurrentLayerResponse(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: int
    def __init__(self, layer: _Optional[int] = ...) -> None: ...

class LayersQueryRequest(_message.Message):
    __slots__ = ("start_layer", "end_layer")
    START_LAYER_FIELD_NUMBER: _ClassVar[int]
    END_LAYER_FIELD_NUMBER: _ClassVar[int]
    start_layer: int
    end_layer: int
    def __init__(self, start_layer: _Optional[int] = ..., end_layer: _Optional[int] = ...) -> None: ...

class Reward(_message.Message):
    __slots__ = ("smesher_id", "amount")
    SMESHER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    smesher_id: bytes
    amount: int
    def __init__(self, smesher_id: _Optional[bytes] = ..., amount: _Optional[int] = ...) -> None: ...

class Block(_message.Message):
    __slots__ = ("id", "proposals", "rewards")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    proposals: _containers.RepeatedScalarFieldContainer[bytes]
    rewards: _containers.RepeatedCompositeFieldContainer[Reward]
    def __init__(self, id: _Optional[bytes] = ..., proposals: _Optional[_Iterable[bytes]] = ..., rewards: _Optional[_Iterable[_Union[Reward, _Mapping]]] = ...) -> None: ...

class Activation(_message.Message):
    __slots__ = ("id", "target_epoch", "smesher_id", "num_units", "poet_round")
    ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SMESHER_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_UNITS_FIELD_NUMBER: _ClassVar[int]
    POET_ROUND_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    target_epoch: int
    smesher_id: bytes
    num_units: int
    poet_round: int
    def __init__(self, id: _Optional[bytes] = ..., target_epoch: _Optional[int] = ..., smesher_id: _Optional[bytes] = ..., num_units: _Optional[int] = ..., poet_round: _Optional[int] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("number", "status", "hash", "blocks", "activations", "state_root")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Layer.Status]
        STATUS_APPLIED: _ClassVar[Layer.Status]
        STATUS_VERIFIED: _ClassVar[Layer.Status]
    STATUS_UNSPECIFIED: Layer.Status
    STATUS_APPLIED: Layer.Status
    STATUS_VERIFIED: Layer.Status
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_ROOT_FIELD_NUMBER: _ClassVar[int]
    number: int
    status: Layer.Status
    hash: bytes
    blocks: _containers.RepeatedCompositeFieldContainer[Block]
    activations: _containers.RepeatedCompositeFieldContainer[Activation]
    state_root: bytes
    def __init__(self, number: _Optional[int] = ..., status: _Optional[_Union[Layer.Status, str]] = ..., hash: _Optional[bytes] = ..., blocks: _Optional[_Iterable[_Union[Block, _Mapping]]] = ..., activations: _Optional[_Iterable[_Union[Activation, _Mapping]]] = ..., state_root: _Optional[bytes] = ...) -> None: ...

class LayersQueryResponse(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class GenesisResponse(_message.Message):
    __slots__ = ("genesis_time", "layer_duration", "layers_per_epoch")
    GENESIS_TIME_FIELD_NUMBER: _ClassVar[int]
    LAYER_DURATION_FIELD_NUMBER: _ClassVar[int]
    LAYERS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    genesis_time: float
    layer_duration: float
    layers_per_epoch: int
    def __init__(self, genesis_time: _Optional[float] = ..., layer_duration: _Optional[float] = ..., layers_per_epoch: _Optional[int] = ...) -> None: ...

class IsSmeshingResponse(_message.Message):
    __slots__ = ("is_smeshing",)
    IS_SMESHING_FIELD_NUMBER: _ClassVar[int]
    is_smeshing: bool
    def __init__(self, is_smeshing: _Optional[bool] = ...) -> None: ...

class SmesherIDResponse(_message.Message):
    __slots__ = ("public_key",)
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    def __init__(self, public_key: _Optional[bytes] = ...) -> None: ...

class SmeshingStatusResponse(_message.Message):
    __slots__ = ("is_smeshing", "atxs_published", "last_poet_round", "last_error")
    IS_SMESHING_FIELD_NUMBER: _ClassVar[int]
    ATXS_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    LAST_POET_ROUND_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    is_smeshing: bool
    atxs_published: int
    last_poet_round: int
    last_error: str
    def __init__(self, is_smeshing: _Optional[bool] = ..., atxs_published: _Optional[int] = ..., last_poet_round: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class ActivationsQueryRequest(_message.Message):
    __slots__ = ("all_epochs", "target_epoch")
    ALL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    all_epochs: bool
    target_epoch: int
    def __init__(self, all_epochs: _Optional[bool] = ..., target_epoch: _Optional[int] = ...) -> None: ...

class ActivationsQueryResponse(_message.Message):
    __slots__ = ("activations",)
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    activations: _containers.RepeatedCompositeFieldContainer[Activation]
    def __init__(self, activations: _Optional[_Iterable[_Union[Activation, _Mapping]]] = ...) -> None: ...

class ActivationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    def __init__(self, id: _Optional[bytes] = ...) -> None: ...

class BroadcastPoetRequest(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class BroadcastPoetResponse(_message.Message):
    __slots__ = ("accepted", "error")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    error: str
    def __init__(self, accepted: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...
