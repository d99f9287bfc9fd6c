from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_SERVING: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
    MODEL_STATE_STOPPED: _ClassVar[ModelState]
    MODEL_STATE_WORKER: _ClassVar[ModelState]
    MODEL_STATE_STANDBY: _ClassVar[ModelState]

class RpcPath(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RPC_PATH_UNSPECIFIED: _ClassVar[RpcPath]
    RPC_PATH_DIRECT: _ClassVar[RpcPath]
    RPC_PATH_QUIC: _ClassVar[RpcPath]
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_SERVING: ModelState
MODEL_STATE_FAILED: ModelState
MODEL_STATE_STOPPED: ModelState
MODEL_STATE_WORKER: ModelState
MODEL_STATE_STANDBY: ModelState
RPC_PATH_UNSPECIFIED: RpcPath
RPC_PATH_DIRECT: RpcPath
RPC_PATH_QUIC: RpcPath

class RotateKeyRequest(_message.Message):
    __slots__ = ("exclude",)
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    exclude: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exclude: _Optional[_Iterable[str]] = ...) -> None: ...

class RotateKeyReply(_message.Message):
    __slots__ = ("token", "members_told")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_TOLD_FIELD_NUMBER: _ClassVar[int]
    token: str
    members_told: int
    def __init__(self, token: _Optional[str] = ..., members_told: _Optional[int] = ...) -> None: ...

class DropModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DropModelReply(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class DemandReport(_message.Message):
    __slots__ = ("requests",)
    class RequestsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.ScalarMap[str, int]
    def __init__(self, requests: _Optional[_Mapping[str, int]] = ...) -> None: ...

class DemandAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRoutesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("model_id", "path", "size_bytes", "state", "reason", "port", "restarts", "split", "worker", "draft", "draft_acceptance")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    DRAFT_ACCEPTANCE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    path: str
    size_bytes: int
    state: ModelState
    reason: str
    port: int
    restarts: int
    split: _containers.RepeatedCompositeFieldContainer[SplitPart]
    worker: WorkerPart
    draft: str
    draft_acceptance: float
    def __init__(self, model_id: _Optional[str] = ..., path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., state: _Optional[_Union[ModelState, str]] = ..., reason: _Optional[str] = ..., port: _Optional[int] = ..., restarts: _Optional[int] = ..., split: _Optional[_Iterable[_Union[SplitPart, _Mapping]]] = ..., worker: _Optional[_Union[WorkerPart, _Mapping]] = ..., draft: _Optional[str] = ..., draft_acceptance: _Optional[float] = ...) -> None: ...

class WorkerPart(_message.Message):
    __slots__ = ("host", "first_layer", "layers", "total_layers")
    HOST_FIELD_NUMBER: _ClassVar[int]
    FIRST_LAYER_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LAYERS_FIELD_NUMBER: _ClassVar[int]
    host: str
    first_layer: int
    layers: int
    total_layers: int
    def __init__(self, host: _Optional[str] = ..., first_layer: _Optional[int] = ..., layers: _Optional[int] = ..., total_layers: _Optional[int] = ...) -> None: ...

class SplitPart(_message.Message):
    __slots__ = ("node_id", "layers", "fraction")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    layers: int
    fraction: float
    def __init__(self, node_id: _Optional[str] = ..., layers: _Optional[int] = ..., fraction: _Optional[float] = ...) -> None: ...

class RpcLink(_message.Message):
    __slots__ = ("peer", "model", "bytes_to_worker", "bytes_from_worker", "reads_from_worker", "path", "path_note")
    PEER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BYTES_TO_WORKER_FIELD_NUMBER: _ClassVar[int]
    BYTES_FROM_WORKER_FIELD_NUMBER: _ClassVar[int]
    READS_FROM_WORKER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PATH_NOTE_FIELD_NUMBER: _ClassVar[int]
    peer: str
    model: str
    bytes_to_worker: int
    bytes_from_worker: int
    reads_from_worker: int
    path: RpcPath
    path_note: str
    def __init__(self, peer: _Optional[str] = ..., model: _Optional[str] = ..., bytes_to_worker: _Optional[int] = ..., bytes_from_worker: _Optional[int] = ..., reads_from_worker: _Optional[int] = ..., path: _Optional[_Union[RpcPath, str]] = ..., path_note: _Optional[str] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("model_id", "node_id", "local", "endpoint", "state", "split")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    node_id: str
    local: bool
    endpoint: str
    state: ModelState
    split: _containers.RepeatedCompositeFieldContainer[SplitPart]
    def __init__(self, model_id: _Optional[str] = ..., node_id: _Optional[str] = ..., local: _Optional[bool] = ..., endpoint: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., split: _Optional[_Iterable[_Union[SplitPart, _Mapping]]] = ...) -> None: ...

class RouteTable(_message.Message):
    __slots__ = ("routes", "version")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    version: int
    def __init__(self, routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("node_id", "role", "state", "vram_gb", "serving", "rtt_ms", "version", "demand", "can_fetch", "spare", "free_gb", "promoted")
    class DemandEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class SpareEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class PromotedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VRAM_GB_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEMAND_FIELD_NUMBER: _ClassVar[int]
    CAN_FETCH_FIELD_NUMBER: _ClassVar[int]
    SPARE_FIELD_NUMBER: _ClassVar[int]
    FREE_GB_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: str
    state: str
    vram_gb: float
    serving: _containers.RepeatedScalarFieldContainer[str]
    rtt_ms: float
    version: str
    demand: _containers.ScalarMap[str, int]
    can_fetch: _containers.RepeatedScalarFieldContainer[str]
    spare: _containers.ScalarMap[str, int]
    free_gb: float
    promoted: _containers.ScalarMap[str, str]
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[str] = ..., state: _Optional[str] = ..., vram_gb: _Optional[float] = ..., serving: _Optional[_Iterable[str]] = ..., rtt_ms: _Optional[float] = ..., version: _Optional[str] = ..., demand: _Optional[_Mapping[str, int]] = ..., can_fetch: _Optional[_Iterable[str]] = ..., spare: _Optional[_Mapping[str, int]] = ..., free_gb: _Optional[float] = ..., promoted: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelDemand(_message.Message):
    __slots__ = ("model_id", "requests_per_min", "servers", "promoting")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MIN_FIELD_NUMBER: _ClassVar[int]
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    PROMOTING_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    requests_per_min: int
    servers: int
    promoting: bool
    def __init__(self, model_id: _Optional[str] = ..., requests_per_min: _Optional[int] = ..., servers: _Optional[int] = ..., promoting: _Optional[bool] = ...) -> None: ...

class Rebalance(_message.Message):
    __slots__ = ("time_unix", "node_id", "model_id", "action", "reason")
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    time_unix: float
    node_id: str
    model_id: str
    action: str
    reason: str
    def __init__(self, time_unix: _Optional[float] = ..., node_id: _Optional[str] = ..., model_id: _Optional[str] = ..., action: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "mesh_id", "token", "node_state", "models", "my_vram_gb", "version", "routes", "peers", "seq", "rpc_links", "demand", "rebalances", "spare", "my_free_gb")
    class SpareEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MESH_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_STATE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MY_VRAM_GB_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RPC_LINKS_FIELD_NUMBER: _ClassVar[int]
    DEMAND_FIELD_NUMBER: _ClassVar[int]
    REBALANCES_FIELD_NUMBER: _ClassVar[int]
    SPARE_FIELD_NUMBER: _ClassVar[int]
    MY_FREE_GB_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    mesh_id: str
    token: str
    node_state: str
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    my_vram_gb: float
    version: str
    routes: RouteTable
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    seq: int
    rpc_links: _containers.RepeatedCompositeFieldContainer[RpcLink]
    demand: _containers.RepeatedCompositeFieldContainer[ModelDemand]
    rebalances: _containers.RepeatedCompositeFieldContainer[Rebalance]
    spare: _containers.ScalarMap[str, int]
    my_free_gb: float
    def __init__(self, node_id: _Optional[str] = ..., mesh_id: _Optional[str] = ..., token: _Optional[str] = ..., node_state: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., my_vram_gb: _Optional[float] = ..., version: _Optional[str] = ..., routes: _Optional[_Union[RouteTable, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., seq: _Optional[int] = ..., rpc_links: _Optional[_Iterable[_Union[RpcLink, _Mapping]]] = ..., demand: _Optional[_Iterable[_Union[ModelDemand, _Mapping]]] = ..., rebalances: _Optional[_Iterable[_Union[Rebalance, _Mapping]]] = ..., spare: _Optional[_Mapping[str, int]] = ..., my_free_gb: _Optional[float] = ...) -> None: ...
