# mypy: ignore-errors
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountDataFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_DATA_FLAG_UNSPECIFIED: _ClassVar[AccountDataFlag]
    ACCOUNT_DATA_FLAG_TRANSACTION_RECEIPT: _ClassVar[AccountDataFlag]
    ACCOUNT_DATA_FLAG_REWARD: _ClassVar[AccountDataFlag]
    ACCOUNT_DATA_FLAG_ACCOUNT: _ClassVar[AccountDataFlag]

class GlobalStateDataFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GLOBAL_STATE_DATA_FLAG_UNSPECIFIED: _ClassVar[GlobalStateDataFlag]
    GLOBAL_STATE_DATA_FLAG_TRANSACTION_RECEIPT: _ClassVar[GlobalStateDataFlag]
    GLOBAL_STATE_DATA_FLAG_REWARD: _ClassVar[GlobalStateDataFlag]
    GLOBAL_STATE_DATA_FLAG_ACCOUNT: _ClassVar[GlobalStateDataFlag]
    GLOBAL_STATE_DATA_FLAG_GLOBAL_STATE_HASH: _ClassVar[GlobalStateDataFlag]
ACCOUNT_DATA_FLAG_UNSPECIFIED: AccountDataFlag
ACCOUNT_DATA_FLAG_TRANSACTION_RECEIPT: AccountDataFlag
ACCOUNT_DATA_FLAG_REWARD: AccountDataFlag
ACCOUNT_DATA_FLAG_ACCOUNT: AccountDataFlag
GLOBAL_STATE_DATA_FLAG_UNSPECIFIED: GlobalStateDataFlag
GLOBAL_STATE_DATA_FLAG_TRANSACTION_RECEIPT: GlobalStateDataFlag
GLOBAL_STATE_DATA_FLAG_REWARD: GlobalStateDataFlag
GLOBAL_STATE_DATA_FLAG_ACCOUNT: GlobalStateDataFlag
GLOBAL_STATE_DATA_FLAG_GLOBAL_STATE_HASH: GlobalStateDataFlag

class SimpleInt(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class Amount(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class AccountId(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class TransactionId(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    def __init__(self, id: _Optional[bytes] = ...) -> None: ...

class ActivationId(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    def __init__(self, id: _Optional[bytes] = ...) -> None: ...

class SmesherId(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    def __init__(self, id: _Optional[bytes] = ...) -> None: ...

class LayerNumber(_message.Message):
    __slots__ = ("number",)
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    number: int
    def __init__(self, number: _Optional[int] = ...) -> None: ...

class EpochNumber(_message.Message):
    __slots__ = ("number",)
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    number: int
    def __init__(self, number: _Optional[int] = ...) -> None: ...

class Activation(_message.Message):
    __slots__ = ("id", "layer", "smesher_id", "coinbase", "num_units", "sequence", "previous_atxs")
    ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SMESHER_ID_FIELD_NUMBER: _ClassVar[int]
    COINBASE_FIELD_NUMBER: _ClassVar[int]
    NUM_UNITS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ATXS_FIELD_NUMBER: _ClassVar[int]
    id: ActivationId
    layer: LayerNumber
    smesher_id: SmesherId
    coinbase: AccountId
    num_units: int
    sequence: int
    previous_atxs: _containers.RepeatedCompositeFieldContainer[ActivationId]
    def __init__(self, id: _Optional[_Union[ActivationId, _Mapping]] = ..., layer: _Optional[_Union[LayerNumber, _Mapping]] = ..., smesher_id: _Optional[_Union[SmesherId, _Mapping]] = ..., coinbase: _Optional[_Union[AccountId, _Mapping]] = ..., num_units: _Optional[int] = ..., sequence: _Optional[int] = ..., previous_atxs: _Optional[_Iterable[_Union[ActivationId, _Mapping]]] = ...) -> None: ...

class Nonce(_message.Message):
    __slots__ = ("counter", "bitfield")
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    BITFIELD_FIELD_NUMBER: _ClassVar[int]
    counter: int
    bitfield: int
    def __init__(self, counter: _Optional[int] = ..., bitfield: _Optional[int] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("id", "principal", "template", "method", "nonce", "max_gas", "gas_price", "max_spend", "raw")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    MAX_GAS_FIELD_NUMBER: _ClassVar[int]
    GAS_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEND_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    principal: AccountId
    template: AccountId
    method: int
    nonce: Nonce
    max_gas: int
    gas_price: int
    max_spend: int
    raw: bytes
    def __init__(self, id: _Optional[bytes] = ..., principal: _Optional[_Union[AccountId, _Mapping]] = ..., template: _Optional[_Union[AccountId, _Mapping]] = ..., method: _Optional[int] = ..., nonce: _Optional[_Union[Nonce, _Mapping]] = ..., max_gas: _Optional[int] = ..., gas_price: _Optional[int] = ..., max_spend: _Optional[int] = ..., raw: _Optional[bytes] = ...) -> None: ...

class Reward(_message.Message):
    __slots__ = ("layer", "total", "layer_reward", "layer_computed", "coinbase", "smesher")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAYER_REWARD_FIELD_NUMBER: _ClassVar[int]
    LAYER_COMPUTED_FIELD_NUMBER: _ClassVar[int]
    COINBASE_FIELD_NUMBER: _ClassVar[int]
    SMESHER_FIELD_NUMBER: _ClassVar[int]
    layer: LayerNumber
    total: Amount
    layer_reward: Amount
    layer_computed: LayerNumber
    coinbase: AccountId
    smesher: SmesherId
    def __init__(self, layer: _Optional[_Union[LayerNumber, _Mapping]] = ..., total: _Optional[_Union[Amount, _Mapping]] = ..., layer_reward: _Optional[_Union[Amount, _Mapping]] = ..., layer_computed: _Optional[_Union[LayerNumber, _Mapping]] = ..., coinbase: _Optional[_Union[AccountId, _Mapping]] = ..., smesher: _Optional[_Union[SmesherId, _Mapping]] = ...) -> None: ...

class Block(_message.Message):
    __slots__ = ("id", "transactions", "activation_id", "smesher_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SMESHER_ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    activation_id: ActivationId
    smesher_id: SmesherId
    def __init__(self, id: _Optional[bytes] = ..., transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., activation_id: _Optional[_Union[ActivationId, _Mapping]] = ..., smesher_id: _Optional[_Union[SmesherId, _Mapping]] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("number", "status", "hash", "blocks", "activations", "root_state_hash")
    class LayerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LAYER_STATUS_UNSPECIFIED: _ClassVar[Layer.LayerStatus]
        LAYER_STATUS_APPROVED: _ClassVar[Layer.LayerStatus]
        LAYER_STATUS_CONFIRMED: _ClassVar[Layer.LayerStatus]
        LAYER_STATUS_APPLIED: _ClassVar[Layer.LayerStatus]
    LAYER_STATUS_UNSPECIFIED: Layer.LayerStatus
    LAYER_STATUS_APPROVED: Layer.LayerStatus
    LAYER_STATUS_CONFIRMED: Layer.LayerStatus
    LAYER_STATUS_APPLIED: Layer.LayerStatus
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    ROOT_STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    number: LayerNumber
    status: Layer.LayerStatus
    hash: bytes
    blocks: _containers.RepeatedCompositeFieldContainer[Block]
    activations: _containers.RepeatedCompositeFieldContainer[Activation]
    root_state_hash: bytes
    def __init__(self, number: _Optional[_Union[LayerNumber, _Mapping]] = ..., status: _Optional[_Union[Layer.LayerStatus, str]] = ..., hash: _Optional[bytes] = ..., blocks: _Optional[_Iterable[_Union[Block, _Mapping]]] = ..., activations: _Optional[_Iterable[_Union[Activation, _Mapping]]] = ..., root_state_hash: _Optional[bytes] = ...) -> None: ...

class MalfeasanceProof(_message.Message):
    __slots__ = ("smesher_id", "layer", "kind", "debug_info", "proof")
    class MalfeasanceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MALFEASANCE_UNSPECIFIED: _ClassVar[MalfeasanceProof.MalfeasanceType]
        MALFEASANCE_ATX: _ClassVar[MalfeasanceProof.MalfeasanceType]
        MALFEASANCE_BALLOT: _ClassVar[MalfeasanceProof.MalfeasanceType]
        MALFEASANCE_HARE: _ClassVar[MalfeasanceProof.MalfeasanceType]
        MALFEASANCE_POST_INDEX: _ClassVar[MalfeasanceProof.MalfeasanceType]
        MALFEASANCE_INCORRECT_PREV_ATX: _ClassVar[MalfeasanceProof.MalfeasanceType]
    MALFEASANCE_UNSPECIFIED: MalfeasanceProof.MalfeasanceType
    MALFEASANCE_ATX: MalfeasanceProof.MalfeasanceType
    MALFEASANCE_BALLOT: MalfeasanceProof.MalfeasanceType
    MALFEASANCE_HARE: MalfeasanceProof.MalfeasanceType
    MALFEASANCE_POST_INDEX: MalfeasanceProof.MalfeasanceType
    MALFEASANCE_INCORRECT_PREV_ATX: MalfeasanceProof.MalfeasanceType
    SMESHER_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEBUG_INFO_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    smesher_id: SmesherId
    layer: LayerNumber
    kind: MalfeasanceProof.MalfeasanceType
    debug_info: str
    proof: bytes
    def __init__(self, smesher_id: _Optional[_Union[SmesherId, _Mapping]] = ..., layer: _Optional[_Union[LayerNumber, _Mapping]] = ..., kind: _Optional[_Union[MalfeasanceProof.MalfeasanceType, str]] = ..., debug_info: _Optional[str] = ..., proof: _Optional[bytes] = ...) -> None: ...

class RpcStatus(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("connected_peers", "is_synced", "synced_layer", "top_layer", "verified_layer")
    CONNECTED_PEERS_FIELD_NUMBER: _ClassVar[int]
    IS_SYNCED_FIELD_NUMBER: _ClassVar[int]
    SYNCED_LAYER_FIELD_NUMBER: _ClassVar[int]
    TOP_LAYER_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_LAYER_FIELD_NUMBER: _ClassVar[int]
    connected_peers: int
    is_synced: bool
    synced_layer: LayerNumber
    top_layer: LayerNumber
    verified_layer: LayerNumber
    def __init__(self, connected_peers: _Optional[int] = ..., is_synced: _Optional[bool] = ..., synced_layer: _Optional[_Union[LayerNumber, _Mapping]] = ..., top_layer: _Optional[_Union[LayerNumber, _Mapping]] = ..., verified_layer: _Optional[_Union[LayerNumber, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: NodeStatus
    def __init__(self, status: _Optional[_Union[NodeStatus, _Mapping]] = ...) -> None: ...

class GenesisTimeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GenesisTimeResponse(_message.Message):
    __slots__ = ("unixtime",)
    UNIXTIME_FIELD_NUMBER: _ClassVar[int]
    unixtime: SimpleInt
    def __init__(self, unixtime: _Optional[_Union[SimpleInt, _Mapping]] = ...) -> None: ...

class CurrentLayerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CurrentLayerResponse(_message.Message):
    __slots__ = ("layernum",)
    LAYERNUM_FIELD_NUMBER: _ClassVar[int]
    layernum: LayerNumber
    def __init__(self, layernum: _Optional[_Union[LayerNumber, _Mapping]] = ...) -> None: ...

class CurrentEpochRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CurrentEpochResponse(_message.Message):
    __slots__ = ("epochnum",)
    EPOCHNUM_FIELD_NUMBER: _ClassVar[int]
    epochnum: EpochNumber
    def __init__(self, epochnum: _Optional[_Union[EpochNumber, _Mapping]] = ...) -> None: ...

class EpochNumLayersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EpochNumLayersResponse(_message.Message):
    __slots__ = ("numlayers",)
    NUMLAYERS_FIELD_NUMBER: _ClassVar[int]
    numlayers: LayerNumber
    def __init__(self, numlayers: _Optional[_Union[LayerNumber, _Mapping]] = ...) -> None: ...

class LayerDurationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LayerDurationResponse(_message.Message):
    __slots__ = ("duration",)
    DURATION_FIELD_NUMBER: _ClassVar[int]
    duration: SimpleInt
    def __init__(self, duration: _Optional[_Union[SimpleInt, _Mapping]] = ...) -> None: ...

class LayersQueryRequest(_message.Message):
    __slots__ = ("start_layer", "end_layer")
    START_LAYER_FIELD_NUMBER: _ClassVar[int]
    END_LAYER_FIELD_NUMBER: _ClassVar[int]
    start_layer: LayerNumber
    end_layer: LayerNumber
    def __init__(self, start_layer: _Optional[_Union[LayerNumber, _Mapping]] = ..., end_layer: _Optional[_Union[LayerNumber, _Mapping]] = ...) -> None: ...

class LayersQueryResponse(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, layer: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class LayerStreamRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LayerStreamResponse(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: Layer
    def __init__(self, layer: _Optional[_Union[Layer, _Mapping]] = ...) -> None: ...

class EpochStreamRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class EpochStreamResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: ActivationId
    def __init__(self, id: _Optional[_Union[ActivationId, _Mapping]] = ...) -> None: ...

class MalfeasanceRequest(_message.Message):
    __slots__ = ("smesher_hex", "include_proof")
    SMESHER_HEX_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROOF_FIELD_NUMBER: _ClassVar[int]
    smesher_hex: str
    include_proof: bool
    def __init__(self, smesher_hex: _Optional[str] = ..., include_proof: _Optional[bool] = ...) -> None: ...

class MalfeasanceResponse(_message.Message):
    __slots__ = ("proof",)
    PROOF_FIELD_NUMBER: _ClassVar[int]
    proof: MalfeasanceProof
    def __init__(self, proof: _Optional[_Union[MalfeasanceProof, _Mapping]] = ...) -> None: ...

class MalfeasanceStreamRequest(_message.Message):
    __slots__ = ("include_proof",)
    INCLUDE_PROOF_FIELD_NUMBER: _ClassVar[int]
    include_proof: bool
    def __init__(self, include_proof: _Optional[bool] = ...) -> None: ...

class MalfeasanceStreamResponse(_message.Message):
    __slots__ = ("proof",)
    PROOF_FIELD_NUMBER: _ClassVar[int]
    proof: MalfeasanceProof
    def __init__(self, proof: _Optional[_Union[MalfeasanceProof, _Mapping]] = ...) -> None: ...

class AccountState(_message.Message):
    __slots__ = ("counter", "balance")
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    counter: int
    balance: Amount
    def __init__(self, counter: _Optional[int] = ..., balance: _Optional[_Union[Amount, _Mapping]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "state_current", "state_projected")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_CURRENT_FIELD_NUMBER: _ClassVar[int]
    STATE_PROJECTED_FIELD_NUMBER: _ClassVar[int]
    account_id: AccountId
    state_current: AccountState
    state_projected: AccountState
    def __init__(self, account_id: _Optional[_Union[AccountId, _Mapping]] = ..., state_current: _Optional[_Union[AccountState, _Mapping]] = ..., state_projected: _Optional[_Union[AccountState, _Mapping]] = ...) -> None: ...

class AccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: AccountId
    def __init__(self, account_id: _Optional[_Union[AccountId, _Mapping]] = ...) -> None: ...

class AccountResponse(_message.Message):
    __slots__ = ("account_wrapper",)
    ACCOUNT_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    account_wrapper: Account
    def __init__(self, account_wrapper: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class AccountDataFilter(_message.Message):
    __slots__ = ("account_id", "account_data_flags")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_DATA_FLAGS_FIELD_NUMBER: _ClassVar[int]
    account_id: AccountId
    account_data_flags: int
    def __init__(self, account_id: _Optional[_Union[AccountId, _Mapping]] = ..., account_data_flags: _Optional[int] = ...) -> None: ...

class AccountDataStreamRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: AccountDataFilter
    def __init__(self, filter: _Optional[_Union[AccountDataFilter, _Mapping]] = ...) -> None: ...

class AccountDataStreamResponse(_message.Message):
    __slots__ = ("datum",)
    DATUM_FIELD_NUMBER: _ClassVar[int]
    datum: AccountData
    def __init__(self, datum: _Optional[_Union[AccountData, _Mapping]] = ...) -> None: ...

class AccountDataQueryRequest(_message.Message):
    __slots__ = ("filter", "max_results", "offset")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    filter: AccountDataFilter
    max_results: int
    offset: int
    def __init__(self, filter: _Optional[_Union[AccountDataFilter, _Mapping]] = ..., max_results: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class AccountData(_message.Message):
    __slots__ = ("reward", "account_wrapper")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    account_wrapper: Account
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ..., account_wrapper: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class AccountDataQueryResponse(_message.Message):
    __slots__ = ("total_results", "account_item")
    TOTAL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ITEM_FIELD_NUMBER: _ClassVar[int]
    total_results: int
    account_item: _containers.RepeatedCompositeFieldContainer[AccountData]
    def __init__(self, total_results: _Optional[int] = ..., account_item: _Optional[_Iterable[_Union[AccountData, _Mapping]]] = ...) -> None: ...

class GlobalStateHash(_message.Message):
    __slots__ = ("root_hash", "layer")
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    root_hash: bytes
    layer: LayerNumber
    def __init__(self, root_hash: _Optional[bytes] = ..., layer: _Optional[_Union[LayerNumber, _Mapping]] = ...) -> None: ...

class GlobalStateHashRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GlobalStateHashResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: GlobalStateHash
    def __init__(self, response: _Optional[_Union[GlobalStateHash, _Mapping]] = ...) -> None: ...

class GlobalStateStreamRequest(_message.Message):
    __slots__ = ("global_state_data_flags",)
    GLOBAL_STATE_DATA_FLAGS_FIELD_NUMBER: _ClassVar[int]
    global_state_data_flags: int
    def __init__(self, global_state_data_flags: _Optional[int] = ...) -> None: ...

class GlobalStateData(_message.Message):
    __slots__ = ("reward", "account_wrapper", "global_state")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_STATE_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    account_wrapper: Account
    global_state: GlobalStateHash
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ..., account_wrapper: _Optional[_Union[Account, _Mapping]] = ..., global_state: _Optional[_Union[GlobalStateHash, _Mapping]] = ...) -> None: ...

class GlobalStateStreamResponse(_message.Message):
    __slots__ = ("datum",)
    DATUM_FIELD_NUMBER: _ClassVar[int]
    datum: GlobalStateData
    def __init__(self, datum: _Optional[_Union[GlobalStateData, _Mapping]] = ...) -> None: ...

class SubmitTransactionRequest(_message.Message):
    __slots__ = ("transaction",)
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    transaction: bytes
    def __init__(self, transaction: _Optional[bytes] = ...) -> None: ...

class TransactionState(_message.Message):
    __slots__ = ("id", "state")
    class TransactionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TRANSACTION_STATE_UNSPECIFIED: _ClassVar[TransactionState.TransactionState]
        TRANSACTION_STATE_REJECTED: _ClassVar[TransactionState.TransactionState]
        TRANSACTION_STATE_INSUFFICIENT_FUNDS: _ClassVar[TransactionState.TransactionState]
        TRANSACTION_STATE_CONFLICTING: _ClassVar[TransactionState.TransactionState]
        TRANSACTION_STATE_MEMPOOL: _ClassVar[TransactionState.TransactionState]
        TRANSACTION_STATE_MESH: _ClassVar[TransactionState.TransactionState]
        TRANSACTION_STATE_PROCESSED: _ClassVar[TransactionState.TransactionState]
        TRANSACTION_STATE_INEFFECTUAL: _ClassVar[TransactionState.TransactionState]
    TRANSACTION_STATE_UNSPECIFIED: TransactionState.TransactionState
    TRANSACTION_STATE_REJECTED: TransactionState.TransactionState
    TRANSACTION_STATE_INSUFFICIENT_FUNDS: TransactionState.TransactionState
    TRANSACTION_STATE_CONFLICTING: TransactionState.TransactionState
    TRANSACTION_STATE_MEMPOOL: TransactionState.TransactionState
    TRANSACTION_STATE_MESH: TransactionState.TransactionState
    TRANSACTION_STATE_PROCESSED: TransactionState.TransactionState
    TRANSACTION_STATE_INEFFECTUAL: TransactionState.TransactionState
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: TransactionId
    state: TransactionState.TransactionState
    def __init__(self, id: _Optional[_Union[TransactionId, _Mapping]] = ..., state: _Optional[_Union[TransactionState.TransactionState, str]] = ...) -> None: ...

class SubmitTransactionResponse(_message.Message):
    __slots__ = ("status", "txstate")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TXSTATE_FIELD_NUMBER: _ClassVar[int]
    status: RpcStatus
    txstate: TransactionState
    def __init__(self, status: _Optional[_Union[RpcStatus, _Mapping]] = ..., txstate: _Optional[_Union[TransactionState, _Mapping]] = ...) -> None: ...

class TransactionsStateRequest(_message.Message):
    __slots__ = ("transaction_id", "include_transactions")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: _containers.RepeatedCompositeFieldContainer[TransactionId]
    include_transactions: bool
    def __init__(self, transaction_id: _Optional[_Iterable[_Union[TransactionId, _Mapping]]] = ..., include_transactions: _Optional[bool] = ...) -> None: ...

class TransactionsStateResponse(_message.Message):
    __slots__ = ("transactions_state", "transactions")
    TRANSACTIONS_STATE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    transactions_state: _containers.RepeatedCompositeFieldContainer[TransactionState]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    def __init__(self, transactions_state: _Optional[_Iterable[_Union[TransactionState, _Mapping]]] = ..., transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ...) -> None: ...

class IsSmeshingResponse(_message.Message):
    __slots__ = ("is_smeshing",)
    IS_SMESHING_FIELD_NUMBER: _ClassVar[int]
    is_smeshing: bool
    def __init__(self, is_smeshing: _Optional[bool] = ...) -> None: ...

class SmesherIDsResponse(_message.Message):
    __slots__ = ("public_keys",)
    PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, public_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CoinbaseResponse(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: AccountId
    def __init__(self, account_id: _Optional[_Union[AccountId, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    def __init__(self, id: _Optional[bytes] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("atx", "malfeasance_proof")
    ATX_FIELD_NUMBER: _ClassVar[int]
    MALFEASANCE_PROOF_FIELD_NUMBER: _ClassVar[int]
    atx: Activation
    malfeasance_proof: MalfeasanceProof
    def __init__(self, atx: _Optional[_Union[Activation, _Mapping]] = ..., malfeasance_proof: _Optional[_Union[MalfeasanceProof, _Mapping]] = ...) -> None: ...

class HighestResponse(_message.Message):
    __slots__ = ("atx",)
    ATX_FIELD_NUMBER: _ClassVar[int]
    atx: Activation
    def __init__(self, atx: _Optional[_Union[Activation, _Mapping]] = ...) -> None: ...

class AccountsRequest(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: int
    def __init__(self, layer: _Optional[int] = ...) -> None: ...

class AccountsResponse(_message.Message):
    __slots__ = ("account_wrapper",)
    ACCOUNT_WRAPPER_FIELD_NUMBER: _ClassVar[int]
    account_wrapper: _containers.RepeatedCompositeFieldContainer[Account]
    def __init__(self, account_wrapper: _Optional[_Iterable[_Union[Account, _Mapping]]] = ...) -> None: ...

class ActiveSetRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class ActiveSetResponse(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedCompositeFieldContainer[ActivationId]
    def __init__(self, ids: _Optional[_Iterable[_Union[ActivationId, _Mapping]]] = ...) -> None: ...

class Eligibility(_message.Message):
    __slots__ = ("j", "signature")
    J_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    j: int
    signature: bytes
    def __init__(self, j: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("id", "epoch", "layer", "smesher", "ballot", "eligibilities", "status")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Created: _ClassVar[Proposal.Status]
        Included: _ClassVar[Proposal.Status]
    Created: Proposal.Status
    Included: Proposal.Status
    ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SMESHER_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    ELIGIBILITIES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    epoch: EpochNumber
    layer: LayerNumber
    smesher: SmesherId
    ballot: bytes
    eligibilities: _containers.RepeatedCompositeFieldContainer[Eligibility]
    status: Proposal.Status
    def __init__(self, id: _Optional[bytes] = ..., epoch: _Optional[_Union[EpochNumber, _Mapping]] = ..., layer: _Optional[_Union[LayerNumber, _Mapping]] = ..., smesher: _Optional[_Union[SmesherId, _Mapping]] = ..., ballot: _Optional[bytes] = ..., eligibilities: _Optional[_Iterable[_Union[Eligibility, _Mapping]]] = ..., status: _Optional[_Union[Proposal.Status, str]] = ...) -> None: ...
