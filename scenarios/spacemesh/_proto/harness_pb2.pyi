# mypy: ignore-errors
from google.protobuf import empty_pb2 as _empty_pb2
from scenarios.spacemesh._proto import spacemesh_pb2 as _spacemesh_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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

class AtxInfo(_message.Message):
    __slots__ = ("atx", "target_epoch", "poet_round")
    ATX_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    POET_ROUND_FIELD_NUMBER: _ClassVar[int]
    atx: _spacemesh_pb2.Activation
    target_epoch: int
    poet_round: int
    def __init__(self, atx: _Optional[_Union[_spacemesh_pb2.Activation, _Mapping]] = ..., target_epoch: _Optional[int] = ..., poet_round: _Optional[int] = ...) -> None: ...

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
    activations: _containers.RepeatedCompositeFieldContainer[AtxInfo]
    def __init__(self, activations: _Optional[_Iterable[_Union[AtxInfo, _Mapping]]] = ...) -> None: ...

class EligibilitiesRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class EligibilitiesResponse(_message.Message):
    __slots__ = ("slots",)
    class SlotsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.ScalarMap[str, int]
    def __init__(self, slots: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: int
    def __init__(self, layer: _Optional[int] = ...) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

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
