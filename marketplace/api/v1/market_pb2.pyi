from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_ACTIVE: _ClassVar[DeploymentState]
    DEPLOYMENT_CLOSED: _ClassVar[DeploymentState]

class OrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATE_UNSPECIFIED: _ClassVar[OrderState]
    ORDER_OPEN: _ClassVar[OrderState]
    ORDER_ACTIVE: _ClassVar[OrderState]
    ORDER_CLOSED: _ClassVar[OrderState]

class BidState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BID_STATE_UNSPECIFIED: _ClassVar[BidState]
    BID_OPEN: _ClassVar[BidState]
    BID_WON: _ClassVar[BidState]
    BID_LOST: _ClassVar[BidState]
    BID_WITHDRAWN: _ClassVar[BidState]
    BID_CLOSED: _ClassVar[BidState]

class LeaseState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEASE_STATE_UNSPECIFIED: _ClassVar[LeaseState]
    LEASE_PENDING: _ClassVar[LeaseState]
    LEASE_RUNNING: _ClassVar[LeaseState]
    LEASE_CLOSED: _ClassVar[LeaseState]

class LeaseCloseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEASE_CLOSE_REASON_UNSPECIFIED: _ClassVar[LeaseCloseReason]
    CLOSED_BY_TENANT: _ClassVar[LeaseCloseReason]
    CLOSED_BY_PROVIDER: _ClassVar[LeaseCloseReason]
    COMPLETED: _ClassVar[LeaseCloseReason]
    FAILED: _ClassVar[LeaseCloseReason]
    INSUFFICIENT_FUNDS: _ClassVar[LeaseCloseReason]
    PROVIDER_LOST: _ClassVar[LeaseCloseReason]
    MANIFEST_TIMEOUT: _ClassVar[LeaseCloseReason]
    CLOSED_WITH_DEPLOYMENT: _ClassVar[LeaseCloseReason]
    GANG_STOPPED: _ClassVar[LeaseCloseReason]
    PREEMPTED: _ClassVar[LeaseCloseReason]
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_ACTIVE: DeploymentState
DEPLOYMENT_CLOSED: DeploymentState
ORDER_STATE_UNSPECIFIED: OrderState
ORDER_OPEN: OrderState
ORDER_ACTIVE: OrderState
ORDER_CLOSED: OrderState
BID_STATE_UNSPECIFIED: BidState
BID_OPEN: BidState
BID_WON: BidState
BID_LOST: BidState
BID_WITHDRAWN: BidState
BID_CLOSED: BidState
LEASE_STATE_UNSPECIFIED: LeaseState
LEASE_PENDING: LeaseState
LEASE_RUNNING: LeaseState
LEASE_CLOSED: LeaseState
LEASE_CLOSE_REASON_UNSPECIFIED: LeaseCloseReason
CLOSED_BY_TENANT: LeaseCloseReason
CLOSED_BY_PROVIDER: LeaseCloseReason
COMPLETED: LeaseCloseReason
FAILED: LeaseCloseReason
INSUFFICIENT_FUNDS: LeaseCloseReason
PROVIDER_LOST: LeaseCloseReason
MANIFEST_TIMEOUT: LeaseCloseReason
CLOSED_WITH_DEPLOYMENT: LeaseCloseReason
GANG_STOPPED: LeaseCloseReason
PREEMPTED: LeaseCloseReason

class SignedRequest(_message.Message):
    __slots__ = ("payload", "public_key", "signature", "nonce", "timestamp_ms", "market_id")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    public_key: bytes
    signature: bytes
    nonce: bytes
    timestamp_ms: int
    market_id: str
    def __init__(self, payload: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ..., market_id: _Optional[str] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("address", "balance", "escrowed", "denom")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    ESCROWED_FIELD_NUMBER: _ClassVar[int]
    DENOM_FIELD_NUMBER: _ClassVar[int]
    address: str
    balance: int
    escrowed: int
    denom: str
    def __init__(self, address: _Optional[str] = ..., balance: _Optional[int] = ..., escrowed: _Optional[int] = ..., denom: _Optional[str] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class FundAccount(_message.Message):
    __slots__ = ("address", "amount")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    address: str
    amount: int
    def __init__(self, address: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("id", "time_ms", "debit", "credit", "amount", "memo", "lease_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DEBIT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    time_ms: int
    debit: str
    credit: str
    amount: int
    memo: str
    lease_id: str
    def __init__(self, id: _Optional[int] = ..., time_ms: _Optional[int] = ..., debit: _Optional[str] = ..., credit: _Optional[str] = ..., amount: _Optional[int] = ..., memo: _Optional[str] = ..., lease_id: _Optional[str] = ...) -> None: ...

class AuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditReport(_message.Message):
    __slots__ = ("balanced", "entries", "total_minted", "problems")
    BALANCED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MINTED_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    balanced: bool
    entries: int
    total_minted: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, balanced: _Optional[bool] = ..., entries: _Optional[int] = ..., total_minted: _Optional[int] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class GpuSpec(_message.Message):
    __slots__ = ("units", "attributes")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    units: int
    attributes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, units: _Optional[int] = ..., attributes: _Optional[_Iterable[str]] = ...) -> None: ...

class StorageSpec(_message.Message):
    __slots__ = ("name", "bytes", "persistent", "storage_class")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    name: str
    bytes: int
    persistent: bool
    storage_class: str
    def __init__(self, name: _Optional[str] = ..., bytes: _Optional[int] = ..., persistent: _Optional[bool] = ..., storage_class: _Optional[str] = ...) -> None: ...

class ResourceUnit(_message.Message):
    __slots__ = ("service", "count", "cpu_millis", "memory_bytes", "storage", "gpu", "max_price_per_hour", "ports")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    service: str
    count: int
    cpu_millis: int
    memory_bytes: int
    storage: _containers.RepeatedCompositeFieldContainer[StorageSpec]
    gpu: GpuSpec
    max_price_per_hour: int
    ports: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, service: _Optional[str] = ..., count: _Optional[int] = ..., cpu_millis: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., storage: _Optional[_Iterable[_Union[StorageSpec, _Mapping]]] = ..., gpu: _Optional[_Union[GpuSpec, _Mapping]] = ..., max_price_per_hour: _Optional[int] = ..., ports: _Optional[_Iterable[int]] = ...) -> None: ...

class PlacementRequirements(_message.Message):
    __slots__ = ("attributes", "signed_by_all_of", "signed_by_any_of")
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SIGNED_BY_ALL_OF_FIELD_NUMBER: _ClassVar[int]
    SIGNED_BY_ANY_OF_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    signed_by_all_of: _containers.RepeatedScalarFieldContainer[str]
    signed_by_any_of: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., signed_by_all_of: _Optional[_Iterable[str]] = ..., signed_by_any_of: _Optional[_Iterable[str]] = ...) -> None: ...

class AuctionSettings(_message.Message):
    __slots__ = ("bid_window_ms", "payment", "manual", "min_reliability")
    class Payment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PAYMENT_UNSPECIFIED: _ClassVar[AuctionSettings.Payment]
        FIRST_PRICE: _ClassVar[AuctionSettings.Payment]
        SECOND_PRICE: _ClassVar[AuctionSettings.Payment]
    PAYMENT_UNSPECIFIED: AuctionSettings.Payment
    FIRST_PRICE: AuctionSettings.Payment
    SECOND_PRICE: AuctionSettings.Payment
    BID_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    MIN_RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    bid_window_ms: int
    payment: AuctionSettings.Payment
    manual: bool
    min_reliability: float
    def __init__(self, bid_window_ms: _Optional[int] = ..., payment: _Optional[_Union[AuctionSettings.Payment, str]] = ..., manual: _Optional[bool] = ..., min_reliability: _Optional[float] = ...) -> None: ...

class GroupSpec(_message.Message):
    __slots__ = ("name", "requirements", "resources", "denom", "max_price_per_hour", "needs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    DENOM_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    NEEDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    requirements: PlacementRequirements
    resources: _containers.RepeatedCompositeFieldContainer[ResourceUnit]
    denom: str
    max_price_per_hour: int
    needs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., requirements: _Optional[_Union[PlacementRequirements, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceUnit, _Mapping]]] = ..., denom: _Optional[str] = ..., max_price_per_hour: _Optional[int] = ..., needs: _Optional[_Iterable[str]] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("id", "owner", "state", "groups", "sdl_sha256", "escrow_balance", "deposited", "created_at_ms", "closed_at_ms", "auction", "job_kind", "max_runtime_ms", "restart_policy", "order_ids", "lease_ids", "rate_per_hour", "escrow_time_left_ms", "escrow_low", "auto_top_up", "auto_top_up_max", "auto_topped_up", "version", "tier")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    SDL_SHA256_FIELD_NUMBER: _ClassVar[int]
    ESCROW_BALANCE_FIELD_NUMBER: _ClassVar[int]
    DEPOSITED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_FIELD_NUMBER: _ClassVar[int]
    JOB_KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNTIME_MS_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    ESCROW_TIME_LEFT_MS_FIELD_NUMBER: _ClassVar[int]
    ESCROW_LOW_FIELD_NUMBER: _ClassVar[int]
    AUTO_TOP_UP_FIELD_NUMBER: _ClassVar[int]
    AUTO_TOP_UP_MAX_FIELD_NUMBER: _ClassVar[int]
    AUTO_TOPPED_UP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner: str
    state: DeploymentState
    groups: _containers.RepeatedCompositeFieldContainer[GroupSpec]
    sdl_sha256: bytes
    escrow_balance: int
    deposited: int
    created_at_ms: int
    closed_at_ms: int
    auction: AuctionSettings
    job_kind: str
    max_runtime_ms: int
    restart_policy: str
    order_ids: _containers.RepeatedScalarFieldContainer[str]
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    rate_per_hour: int
    escrow_time_left_ms: int
    escrow_low: bool
    auto_top_up: int
    auto_top_up_max: int
    auto_topped_up: int
    version: int
    tier: str
    def __init__(self, id: _Optional[str] = ..., owner: _Optional[str] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., groups: _Optional[_Iterable[_Union[GroupSpec, _Mapping]]] = ..., sdl_sha256: _Optional[bytes] = ..., escrow_balance: _Optional[int] = ..., deposited: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., closed_at_ms: _Optional[int] = ..., auction: _Optional[_Union[AuctionSettings, _Mapping]] = ..., job_kind: _Optional[str] = ..., max_runtime_ms: _Optional[int] = ..., restart_policy: _Optional[str] = ..., order_ids: _Optional[_Iterable[str]] = ..., lease_ids: _Optional[_Iterable[str]] = ..., rate_per_hour: _Optional[int] = ..., escrow_time_left_ms: _Optional[int] = ..., escrow_low: _Optional[bool] = ..., auto_top_up: _Optional[int] = ..., auto_top_up_max: _Optional[int] = ..., auto_topped_up: _Optional[int] = ..., version: _Optional[int] = ..., tier: _Optional[str] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("id", "deployment_id", "owner", "state", "spec", "auction", "created_at_ms", "closes_at_ms", "job_kind", "tier", "gang")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    AUCTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    JOB_KIND_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    GANG_FIELD_NUMBER: _ClassVar[int]
    id: str
    deployment_id: str
    owner: str
    state: OrderState
    spec: GroupSpec
    auction: AuctionSettings
    created_at_ms: int
    closes_at_ms: int
    job_kind: str
    tier: str
    gang: OrderGang
    def __init__(self, id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., owner: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., spec: _Optional[_Union[GroupSpec, _Mapping]] = ..., auction: _Optional[_Union[AuctionSettings, _Mapping]] = ..., created_at_ms: _Optional[int] = ..., closes_at_ms: _Optional[int] = ..., job_kind: _Optional[str] = ..., tier: _Optional[str] = ..., gang: _Optional[_Union[OrderGang, _Mapping]] = ...) -> None: ...

class OrderGang(_message.Message):
    __slots__ = ("id", "node", "nodes", "min_bandwidth_mbps", "port", "gradient_bytes", "sync_interval_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MIN_BANDWIDTH_MBPS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SYNC_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    node: int
    nodes: int
    min_bandwidth_mbps: float
    port: int
    gradient_bytes: int
    sync_interval_ms: int
    def __init__(self, id: _Optional[str] = ..., node: _Optional[int] = ..., nodes: _Optional[int] = ..., min_bandwidth_mbps: _Optional[float] = ..., port: _Optional[int] = ..., gradient_bytes: _Optional[int] = ..., sync_interval_ms: _Optional[int] = ...) -> None: ...

class BidOffer(_message.Message):
    __slots__ = ("gpu_models", "gpu_uuids", "driver_version", "cuda_version", "price_per_gpu_hour", "region", "preempts")
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    GPU_UUIDS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_GPU_HOUR_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    PREEMPTS_FIELD_NUMBER: _ClassVar[int]
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    gpu_uuids: _containers.RepeatedScalarFieldContainer[str]
    driver_version: str
    cuda_version: str
    price_per_gpu_hour: int
    region: str
    preempts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gpu_models: _Optional[_Iterable[str]] = ..., gpu_uuids: _Optional[_Iterable[str]] = ..., driver_version: _Optional[str] = ..., cuda_version: _Optional[str] = ..., price_per_gpu_hour: _Optional[int] = ..., region: _Optional[str] = ..., preempts: _Optional[_Iterable[str]] = ...) -> None: ...

class Bid(_message.Message):
    __slots__ = ("id", "order_id", "provider", "price_per_hour", "state", "created_at_ms", "reliability", "offer")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    id: str
    order_id: str
    provider: str
    price_per_hour: int
    state: BidState
    created_at_ms: int
    reliability: float
    offer: BidOffer
    def __init__(self, id: _Optional[str] = ..., order_id: _Optional[str] = ..., provider: _Optional[str] = ..., price_per_hour: _Optional[int] = ..., state: _Optional[_Union[BidState, str]] = ..., created_at_ms: _Optional[int] = ..., reliability: _Optional[float] = ..., offer: _Optional[_Union[BidOffer, _Mapping]] = ...) -> None: ...

class Decline(_message.Message):
    __slots__ = ("order_id", "provider", "reason", "time_ms", "by_marketplace")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    BY_MARKETPLACE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    provider: str
    reason: str
    time_ms: int
    by_marketplace: bool
    def __init__(self, order_id: _Optional[str] = ..., provider: _Optional[str] = ..., reason: _Optional[str] = ..., time_ms: _Optional[int] = ..., by_marketplace: _Optional[bool] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("service", "port", "host", "external_port", "proto", "uri")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    service: str
    port: int
    host: str
    external_port: int
    proto: str
    uri: str
    def __init__(self, service: _Optional[str] = ..., port: _Optional[int] = ..., host: _Optional[str] = ..., external_port: _Optional[int] = ..., proto: _Optional[str] = ..., uri: _Optional[str] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("id", "order_id", "deployment_id", "tenant", "provider", "price_per_hour", "state", "close_reason", "created_at_ms", "running_at_ms", "closed_at_ms", "billed_until_ms", "paid", "exit_code", "message", "endpoints", "version", "failed_version", "tier", "gpu_uuids", "gpu_models", "cpu_millis", "memory_bytes", "storage_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CLOSE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    BILLED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FAILED_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    GPU_UUIDS_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    order_id: str
    deployment_id: str
    tenant: str
    provider: str
    price_per_hour: int
    state: LeaseState
    close_reason: LeaseCloseReason
    created_at_ms: int
    running_at_ms: int
    closed_at_ms: int
    billed_until_ms: int
    paid: int
    exit_code: int
    message: str
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    version: int
    failed_version: int
    tier: str
    gpu_uuids: _containers.RepeatedScalarFieldContainer[str]
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    def __init__(self, id: _Optional[str] = ..., order_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., tenant: _Optional[str] = ..., provider: _Optional[str] = ..., price_per_hour: _Optional[int] = ..., state: _Optional[_Union[LeaseState, str]] = ..., close_reason: _Optional[_Union[LeaseCloseReason, str]] = ..., created_at_ms: _Optional[int] = ..., running_at_ms: _Optional[int] = ..., closed_at_ms: _Optional[int] = ..., billed_until_ms: _Optional[int] = ..., paid: _Optional[int] = ..., exit_code: _Optional[int] = ..., message: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., version: _Optional[int] = ..., failed_version: _Optional[int] = ..., tier: _Optional[str] = ..., gpu_uuids: _Optional[_Iterable[str]] = ..., gpu_models: _Optional[_Iterable[str]] = ..., cpu_millis: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., storage_bytes: _Optional[int] = ...) -> None: ...

class CreateDeployment(_message.Message):
    __slots__ = ("sdl", "deposit", "force", "auto_top_up", "auto_top_up_max")
    SDL_FIELD_NUMBER: _ClassVar[int]
    DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    AUTO_TOP_UP_FIELD_NUMBER: _ClassVar[int]
    AUTO_TOP_UP_MAX_FIELD_NUMBER: _ClassVar[int]
    sdl: bytes
    deposit: int
    force: bool
    auto_top_up: int
    auto_top_up_max: int
    def __init__(self, sdl: _Optional[bytes] = ..., deposit: _Optional[int] = ..., force: _Optional[bool] = ..., auto_top_up: _Optional[int] = ..., auto_top_up_max: _Optional[int] = ...) -> None: ...

class CloseDeployment(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class DepositEscrow(_message.Message):
    __slots__ = ("deployment_id", "amount")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    amount: int
    def __init__(self, deployment_id: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class AcceptBid(_message.Message):
    __slots__ = ("bid_id",)
    BID_ID_FIELD_NUMBER: _ClassVar[int]
    bid_id: str
    def __init__(self, bid_id: _Optional[str] = ...) -> None: ...

class CloseLease(_message.Message):
    __slots__ = ("lease_id", "message")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    message: str
    def __init__(self, lease_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("owner", "open_only", "limit", "page_size", "page_token")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    owner: str
    open_only: bool
    limit: int
    page_size: int
    page_token: str
    def __init__(self, owner: _Optional[str] = ..., open_only: _Optional[bool] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBidsRequest(_message.Message):
    __slots__ = ("order_id", "page_size", "page_token")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    page_size: int
    page_token: str
    def __init__(self, order_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DeploymentList(_message.Message):
    __slots__ = ("deployments", "next_page_token")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class OrderList(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class BidList(_message.Message):
    __slots__ = ("bids", "next_page_token")
    BIDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    next_page_token: str
    def __init__(self, bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LeaseList(_message.Message):
    __slots__ = ("leases", "next_page_token")
    LEASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    next_page_token: str
    def __init__(self, leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LedgerPage(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class OrderExplanation(_message.Message):
    __slots__ = ("order", "bids", "declines", "summary")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    DECLINES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    order: Order
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    declines: _containers.RepeatedCompositeFieldContainer[Decline]
    summary: str
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ..., declines: _Optional[_Iterable[_Union[Decline, _Mapping]]] = ..., summary: _Optional[str] = ...) -> None: ...

class DeploymentEvent(_message.Message):
    __slots__ = ("seq", "time_ms", "deployment_id", "kind", "order_id", "bid_id", "lease_id", "message", "bid", "lease")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    BID_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time_ms: int
    deployment_id: str
    kind: str
    order_id: str
    bid_id: str
    lease_id: str
    message: str
    bid: Bid
    lease: Lease
    def __init__(self, seq: _Optional[int] = ..., time_ms: _Optional[int] = ..., deployment_id: _Optional[str] = ..., kind: _Optional[str] = ..., order_id: _Optional[str] = ..., bid_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., message: _Optional[str] = ..., bid: _Optional[_Union[Bid, _Mapping]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class WatchDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id", "after_seq", "history_only")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ONLY_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    after_seq: int
    history_only: bool
    def __init__(self, deployment_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., history_only: _Optional[bool] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("lease_id", "seq", "time_ms", "stream", "line")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    seq: int
    time_ms: int
    stream: str
    line: str
    def __init__(self, lease_id: _Optional[str] = ..., seq: _Optional[int] = ..., time_ms: _Optional[int] = ..., stream: _Optional[str] = ..., line: _Optional[str] = ...) -> None: ...

class StreamLogsRequest(_message.Message):
    __slots__ = ("lease_id", "follow", "after_seq", "tail")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    follow: bool
    after_seq: int
    tail: int
    def __init__(self, lease_id: _Optional[str] = ..., follow: _Optional[bool] = ..., after_seq: _Optional[int] = ..., tail: _Optional[int] = ...) -> None: ...

class GpuDevice(_message.Message):
    __slots__ = ("index", "uuid", "serial", "model", "name", "memory_mib", "interface", "compute_capability", "healthy", "health_reason", "allocated")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASON_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    serial: str
    model: str
    name: str
    memory_mib: int
    interface: str
    compute_capability: str
    healthy: bool
    health_reason: str
    allocated: bool
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., serial: _Optional[str] = ..., model: _Optional[str] = ..., name: _Optional[str] = ..., memory_mib: _Optional[int] = ..., interface: _Optional[str] = ..., compute_capability: _Optional[str] = ..., healthy: _Optional[bool] = ..., health_reason: _Optional[str] = ..., allocated: _Optional[bool] = ...) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("gpus", "cpu_millis", "memory_bytes", "storage_bytes", "driver_version", "cuda_version")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuDevice]
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    driver_version: str
    cuda_version: str
    def __init__(self, gpus: _Optional[_Iterable[_Union[GpuDevice, _Mapping]]] = ..., cpu_millis: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., storage_bytes: _Optional[int] = ..., driver_version: _Optional[str] = ..., cuda_version: _Optional[str] = ...) -> None: ...

class ProviderInfo(_message.Message):
    __slots__ = ("address", "host_uri", "attributes", "inventory", "region", "reliability", "online", "last_heartbeat_ms", "leases_running", "version")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOST_URI_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    LEASES_RUNNING_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    address: str
    host_uri: str
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    inventory: Inventory
    region: str
    reliability: float
    online: bool
    last_heartbeat_ms: int
    leases_running: int
    version: str
    def __init__(self, address: _Optional[str] = ..., host_uri: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., inventory: _Optional[_Union[Inventory, _Mapping]] = ..., region: _Optional[str] = ..., reliability: _Optional[float] = ..., online: _Optional[bool] = ..., last_heartbeat_ms: _Optional[int] = ..., leases_running: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class RegisterProvider(_message.Message):
    __slots__ = ("host_uri", "attributes", "inventory", "region", "version")
    HOST_URI_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    host_uri: str
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    inventory: Inventory
    region: str
    version: str
    def __init__(self, host_uri: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., inventory: _Optional[_Union[Inventory, _Mapping]] = ..., region: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("provider", "heartbeat_interval_ms", "heartbeat_timeout_ms", "audited")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    AUDITED_FIELD_NUMBER: _ClassVar[int]
    provider: ProviderInfo
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    audited: AuditedAttributes
    def __init__(self, provider: _Optional[_Union[ProviderInfo, _Mapping]] = ..., heartbeat_interval_ms: _Optional[int] = ..., heartbeat_timeout_ms: _Optional[int] = ..., audited: _Optional[_Union[AuditedAttributes, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("inventory", "running_lease_ids", "draining")
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    inventory: Inventory
    running_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    draining: bool
    def __init__(self, inventory: _Optional[_Union[Inventory, _Mapping]] = ..., running_lease_ids: _Optional[_Iterable[str]] = ..., draining: _Optional[bool] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("server_time_ms", "unknown_lease_ids", "audited")
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    AUDITED_FIELD_NUMBER: _ClassVar[int]
    server_time_ms: int
    unknown_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    audited: AuditedAttributes
    def __init__(self, server_time_ms: _Optional[int] = ..., unknown_lease_ids: _Optional[_Iterable[str]] = ..., audited: _Optional[_Union[AuditedAttributes, _Mapping]] = ...) -> None: ...

class WatchOrders(_message.Message):
    __slots__ = ("resume_token", "with_leases")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WITH_LEASES_FIELD_NUMBER: _ClassVar[int]
    resume_token: int
    with_leases: bool
    def __init__(self, resume_token: _Optional[int] = ..., with_leases: _Optional[bool] = ...) -> None: ...

class ProviderEvent(_message.Message):
    __slots__ = ("seq", "time_ms", "order_opened", "order_closed", "lease_won", "bid_lost", "lease_closed", "lease_updated")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ORDER_OPENED_FIELD_NUMBER: _ClassVar[int]
    ORDER_CLOSED_FIELD_NUMBER: _ClassVar[int]
    LEASE_WON_FIELD_NUMBER: _ClassVar[int]
    BID_LOST_FIELD_NUMBER: _ClassVar[int]
    LEASE_CLOSED_FIELD_NUMBER: _ClassVar[int]
    LEASE_UPDATED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time_ms: int
    order_opened: Order
    order_closed: str
    lease_won: Lease
    bid_lost: Bid
    lease_closed: Lease
    lease_updated: Lease
    def __init__(self, seq: _Optional[int] = ..., time_ms: _Optional[int] = ..., order_opened: _Optional[_Union[Order, _Mapping]] = ..., order_closed: _Optional[str] = ..., lease_won: _Optional[_Union[Lease, _Mapping]] = ..., bid_lost: _Optional[_Union[Bid, _Mapping]] = ..., lease_closed: _Optional[_Union[Lease, _Mapping]] = ..., lease_updated: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class PlaceBid(_message.Message):
    __slots__ = ("order_id", "price_per_hour", "offer")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    price_per_hour: int
    offer: BidOffer
    def __init__(self, order_id: _Optional[str] = ..., price_per_hour: _Optional[int] = ..., offer: _Optional[_Union[BidOffer, _Mapping]] = ...) -> None: ...

class WithdrawBid(_message.Message):
    __slots__ = ("bid_id",)
    BID_ID_FIELD_NUMBER: _ClassVar[int]
    bid_id: str
    def __init__(self, bid_id: _Optional[str] = ...) -> None: ...

class DeclineOrder(_message.Message):
    __slots__ = ("order_id", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetManifest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("lease_id", "group_name", "sdl", "tenant_request", "version", "gang")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    SDL_FIELD_NUMBER: _ClassVar[int]
    TENANT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GANG_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    group_name: str
    sdl: bytes
    tenant_request: SignedRequest
    version: int
    gang: GangRendezvous
    def __init__(self, lease_id: _Optional[str] = ..., group_name: _Optional[str] = ..., sdl: _Optional[bytes] = ..., tenant_request: _Optional[_Union[SignedRequest, _Mapping]] = ..., version: _Optional[int] = ..., gang: _Optional[_Union[GangRendezvous, _Mapping]] = ...) -> None: ...

class LeaseStatusReport(_message.Message):
    __slots__ = ("lease_id", "state", "endpoints", "exited", "exit_code", "oom_killed", "message", "version", "update_failed")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FAILED_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    state: LeaseState
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    exited: bool
    exit_code: int
    oom_killed: bool
    message: str
    version: int
    update_failed: bool
    def __init__(self, lease_id: _Optional[str] = ..., state: _Optional[_Union[LeaseState, str]] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., exited: _Optional[bool] = ..., exit_code: _Optional[int] = ..., oom_killed: _Optional[bool] = ..., message: _Optional[str] = ..., version: _Optional[int] = ..., update_failed: _Optional[bool] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("lease_id", "lines")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, lease_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("ok", "message")
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    message: str
    def __init__(self, ok: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class GpuPriceStats(_message.Message):
    __slots__ = ("model", "samples", "p10", "median", "p90")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    P10_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    model: str
    samples: int
    p10: int
    median: int
    p90: int
    def __init__(self, model: _Optional[str] = ..., samples: _Optional[int] = ..., p10: _Optional[int] = ..., median: _Optional[int] = ..., p90: _Optional[int] = ...) -> None: ...

class MarketStatsRequest(_message.Message):
    __slots__ = ("since_ms",)
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    since_ms: int
    def __init__(self, since_ms: _Optional[int] = ...) -> None: ...

class MarketStats(_message.Message):
    __slots__ = ("gpu_prices", "providers_online", "open_orders", "running_leases")
    GPU_PRICES_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_ONLINE_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_LEASES_FIELD_NUMBER: _ClassVar[int]
    gpu_prices: _containers.RepeatedCompositeFieldContainer[GpuPriceStats]
    providers_online: int
    open_orders: int
    running_leases: int
    def __init__(self, gpu_prices: _Optional[_Iterable[_Union[GpuPriceStats, _Mapping]]] = ..., providers_online: _Optional[int] = ..., open_orders: _Optional[int] = ..., running_leases: _Optional[int] = ...) -> None: ...

class ProviderList(_message.Message):
    __slots__ = ("providers", "next_page_token")
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderInfo]
    next_page_token: str
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MarketInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarketInfo(_message.Message):
    __slots__ = ("market_id", "server_time_ms", "max_skew_ms", "denom")
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_SKEW_MS_FIELD_NUMBER: _ClassVar[int]
    DENOM_FIELD_NUMBER: _ClassVar[int]
    market_id: str
    server_time_ms: int
    max_skew_ms: int
    denom: str
    def __init__(self, market_id: _Optional[str] = ..., server_time_ms: _Optional[int] = ..., max_skew_ms: _Optional[int] = ..., denom: _Optional[str] = ...) -> None: ...

class SignProviderAttributes(_message.Message):
    __slots__ = ("provider", "auditor", "attributes", "expires_at_ms")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    AUDITOR_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    auditor: str
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    expires_at_ms: int
    def __init__(self, provider: _Optional[str] = ..., auditor: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class RevokeProviderAttributes(_message.Message):
    __slots__ = ("provider", "auditor", "keys")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    AUDITOR_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    auditor: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, provider: _Optional[str] = ..., auditor: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class Attestation(_message.Message):
    __slots__ = ("provider", "auditor", "key", "value", "signed_at_ms", "expires_at_ms", "revoked_at_ms", "trusted", "valid", "names", "proof")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    AUDITOR_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    provider: str
    auditor: str
    key: str
    value: str
    signed_at_ms: int
    expires_at_ms: int
    revoked_at_ms: int
    trusted: bool
    valid: bool
    names: _containers.RepeatedScalarFieldContainer[str]
    proof: SignedRequest
    def __init__(self, provider: _Optional[str] = ..., auditor: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[str] = ..., signed_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., revoked_at_ms: _Optional[int] = ..., trusted: _Optional[bool] = ..., valid: _Optional[bool] = ..., names: _Optional[_Iterable[str]] = ..., proof: _Optional[_Union[SignedRequest, _Mapping]] = ...) -> None: ...

class AuditorAlias(_message.Message):
    __slots__ = ("foreign", "auditor")
    FOREIGN_FIELD_NUMBER: _ClassVar[int]
    AUDITOR_FIELD_NUMBER: _ClassVar[int]
    foreign: str
    auditor: str
    def __init__(self, foreign: _Optional[str] = ..., auditor: _Optional[str] = ...) -> None: ...

class ListAttestationsRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: str
    def __init__(self, provider: _Optional[str] = ...) -> None: ...

class AttestationList(_message.Message):
    __slots__ = ("attestations", "trusted_auditors", "aliases")
    ATTESTATIONS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_AUDITORS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    attestations: _containers.RepeatedCompositeFieldContainer[Attestation]
    trusted_auditors: _containers.RepeatedScalarFieldContainer[str]
    aliases: _containers.RepeatedCompositeFieldContainer[AuditorAlias]
    def __init__(self, attestations: _Optional[_Iterable[_Union[Attestation, _Mapping]]] = ..., trusted_auditors: _Optional[_Iterable[str]] = ..., aliases: _Optional[_Iterable[_Union[AuditorAlias, _Mapping]]] = ...) -> None: ...

class AuditedAttributes(_message.Message):
    __slots__ = ("auditors",)
    class ByAuditor(_message.Message):
        __slots__ = ("name", "attributes")
        NAME_FIELD_NUMBER: _ClassVar[int]
        ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        name: str
        attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
        def __init__(self, name: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ...) -> None: ...
    AUDITORS_FIELD_NUMBER: _ClassVar[int]
    auditors: _containers.RepeatedCompositeFieldContainer[AuditedAttributes.ByAuditor]
    def __init__(self, auditors: _Optional[_Iterable[_Union[AuditedAttributes.ByAuditor, _Mapping]]] = ...) -> None: ...

class VerifyProviderRequest(_message.Message):
    __slots__ = ("provider", "attributes")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    provider: str
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    def __init__(self, provider: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("check", "ok", "message")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    check: str
    ok: bool
    message: str
    def __init__(self, check: _Optional[str] = ..., ok: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class ProviderFindings(_message.Message):
    __slots__ = ("provider", "ok", "findings")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    ok: bool
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, provider: _Optional[str] = ..., ok: _Optional[bool] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...

class UpdateDeployment(_message.Message):
    __slots__ = ("deployment_id", "sdl", "version")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SDL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    sdl: bytes
    version: int
    def __init__(self, deployment_id: _Optional[str] = ..., sdl: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class UpdateResult(_message.Message):
    __slots__ = ("deployment", "changes")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    changes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., changes: _Optional[_Iterable[str]] = ...) -> None: ...

class ShellOpen(_message.Message):
    __slots__ = ("lease_id", "service", "command", "tty", "rows", "cols", "copy_from", "copy_to", "copy_size")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    COPY_FROM_FIELD_NUMBER: _ClassVar[int]
    COPY_TO_FIELD_NUMBER: _ClassVar[int]
    COPY_SIZE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    service: str
    command: _containers.RepeatedScalarFieldContainer[str]
    tty: bool
    rows: int
    cols: int
    copy_from: str
    copy_to: str
    copy_size: int
    def __init__(self, lease_id: _Optional[str] = ..., service: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., tty: _Optional[bool] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., copy_from: _Optional[str] = ..., copy_to: _Optional[str] = ..., copy_size: _Optional[int] = ...) -> None: ...

class ShellFrame(_message.Message):
    __slots__ = ("open", "stdin", "stdout", "stderr", "stdin_closed", "rows", "cols", "exited", "exit_code", "error", "size", "started")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDIN_CLOSED_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    open: SignedRequest
    stdin: bytes
    stdout: bytes
    stderr: bytes
    stdin_closed: bool
    rows: int
    cols: int
    exited: bool
    exit_code: int
    error: str
    size: int
    started: bool
    def __init__(self, open: _Optional[_Union[SignedRequest, _Mapping]] = ..., stdin: _Optional[bytes] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., stdin_closed: _Optional[bool] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., exited: _Optional[bool] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ..., size: _Optional[int] = ..., started: _Optional[bool] = ...) -> None: ...

class SessionsOpen(_message.Message):
    __slots__ = ("shell_enabled", "max_copy_bytes")
    SHELL_ENABLED_FIELD_NUMBER: _ClassVar[int]
    MAX_COPY_BYTES_FIELD_NUMBER: _ClassVar[int]
    shell_enabled: bool
    max_copy_bytes: int
    def __init__(self, shell_enabled: _Optional[bool] = ..., max_copy_bytes: _Optional[int] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("session_id", "open", "tenant")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    open: ShellOpen
    tenant: str
    def __init__(self, session_id: _Optional[str] = ..., open: _Optional[_Union[ShellOpen, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class SessionAccept(_message.Message):
    __slots__ = ("session_id", "lease_id", "refused")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    lease_id: str
    refused: str
    def __init__(self, session_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., refused: _Optional[str] = ...) -> None: ...

class ProviderMessage(_message.Message):
    __slots__ = ("seq", "method", "request")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    seq: int
    method: str
    request: SignedRequest
    def __init__(self, seq: _Optional[int] = ..., method: _Optional[str] = ..., request: _Optional[_Union[SignedRequest, _Mapping]] = ...) -> None: ...

class ChannelAnswer(_message.Message):
    __slots__ = ("seq", "code", "message", "error", "reply", "already_applied")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    ALREADY_APPLIED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    code: int
    message: str
    error: str
    reply: bytes
    already_applied: bool
    def __init__(self, seq: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., error: _Optional[str] = ..., reply: _Optional[bytes] = ..., already_applied: _Optional[bool] = ...) -> None: ...

class MarketMessage(_message.Message):
    __slots__ = ("answer", "event")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    answer: ChannelAnswer
    event: ProviderEvent
    def __init__(self, answer: _Optional[_Union[ChannelAnswer, _Mapping]] = ..., event: _Optional[_Union[ProviderEvent, _Mapping]] = ...) -> None: ...

class GangRendezvous(_message.Message):
    __slots__ = ("gang_id", "rank", "world_size", "master_addr", "master_port")
    GANG_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    MASTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    gang_id: str
    rank: int
    world_size: int
    master_addr: str
    master_port: int
    def __init__(self, gang_id: _Optional[str] = ..., rank: _Optional[int] = ..., world_size: _Optional[int] = ..., master_addr: _Optional[str] = ..., master_port: _Optional[int] = ...) -> None: ...

class GpuTelemetry(_message.Message):
    __slots__ = ("index", "uuid", "model", "healthy", "health_reason", "temperature_c", "power_w", "utilization_pct", "memory_used_mib", "memory_mib", "xid_count", "last_xid")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASON_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MIB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    XID_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_XID_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    model: str
    healthy: bool
    health_reason: str
    temperature_c: int
    power_w: int
    utilization_pct: int
    memory_used_mib: int
    memory_mib: int
    xid_count: int
    last_xid: int
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., model: _Optional[str] = ..., healthy: _Optional[bool] = ..., health_reason: _Optional[str] = ..., temperature_c: _Optional[int] = ..., power_w: _Optional[int] = ..., utilization_pct: _Optional[int] = ..., memory_used_mib: _Optional[int] = ..., memory_mib: _Optional[int] = ..., xid_count: _Optional[int] = ..., last_xid: _Optional[int] = ...) -> None: ...

class TelemetryReport(_message.Message):
    __slots__ = ("gpus", "read_at_ms")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    READ_AT_MS_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuTelemetry]
    read_at_ms: int
    def __init__(self, gpus: _Optional[_Iterable[_Union[GpuTelemetry, _Mapping]]] = ..., read_at_ms: _Optional[int] = ...) -> None: ...

class ProviderStatusRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: str
    def __init__(self, provider: _Optional[str] = ...) -> None: ...

class DeclineKindCount(_message.Message):
    __slots__ = ("kind", "by_provider", "by_marketplace", "last_reason", "last_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BY_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BY_MARKETPLACE_FIELD_NUMBER: _ClassVar[int]
    LAST_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    by_provider: int
    by_marketplace: int
    last_reason: str
    last_ms: int
    def __init__(self, kind: _Optional[str] = ..., by_provider: _Optional[int] = ..., by_marketplace: _Optional[int] = ..., last_reason: _Optional[str] = ..., last_ms: _Optional[int] = ...) -> None: ...

class ProviderStatus(_message.Message):
    __slots__ = ("provider", "gpus", "read_at_ms", "received_at_ms", "declines", "declines_since_ms")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    READ_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DECLINES_FIELD_NUMBER: _ClassVar[int]
    DECLINES_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    gpus: _containers.RepeatedCompositeFieldContainer[GpuTelemetry]
    read_at_ms: int
    received_at_ms: int
    declines: _containers.RepeatedCompositeFieldContainer[DeclineKindCount]
    declines_since_ms: int
    def __init__(self, provider: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[GpuTelemetry, _Mapping]]] = ..., read_at_ms: _Optional[int] = ..., received_at_ms: _Optional[int] = ..., declines: _Optional[_Iterable[_Union[DeclineKindCount, _Mapping]]] = ..., declines_since_ms: _Optional[int] = ...) -> None: ...

class PriceHistoryRequest(_message.Message):
    __slots__ = ("since_ms", "bucket_ms")
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MS_FIELD_NUMBER: _ClassVar[int]
    since_ms: int
    bucket_ms: int
    def __init__(self, since_ms: _Optional[int] = ..., bucket_ms: _Optional[int] = ...) -> None: ...

class PriceBucket(_message.Message):
    __slots__ = ("start_ms", "gpu_prices")
    START_MS_FIELD_NUMBER: _ClassVar[int]
    GPU_PRICES_FIELD_NUMBER: _ClassVar[int]
    start_ms: int
    gpu_prices: _containers.RepeatedCompositeFieldContainer[GpuPriceStats]
    def __init__(self, start_ms: _Optional[int] = ..., gpu_prices: _Optional[_Iterable[_Union[GpuPriceStats, _Mapping]]] = ...) -> None: ...

class PriceHistory(_message.Message):
    __slots__ = ("bucket_ms", "buckets")
    BUCKET_MS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    bucket_ms: int
    buckets: _containers.RepeatedCompositeFieldContainer[PriceBucket]
    def __init__(self, bucket_ms: _Optional[int] = ..., buckets: _Optional[_Iterable[_Union[PriceBucket, _Mapping]]] = ...) -> None: ...

class PriceAdviceRequest(_message.Message):
    __slots__ = ("provider", "since_ms")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    since_ms: int
    def __init__(self, provider: _Optional[str] = ..., since_ms: _Optional[int] = ...) -> None: ...

class ModelPriceAdvice(_message.Message):
    __slots__ = ("model", "auctions", "unleased", "current_price_per_gpu_hour", "earned", "leases_won", "best_price_per_gpu_hour", "best_revenue", "best_leases_won")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUCTIONS_FIELD_NUMBER: _ClassVar[int]
    UNLEASED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PRICE_PER_GPU_HOUR_FIELD_NUMBER: _ClassVar[int]
    EARNED_FIELD_NUMBER: _ClassVar[int]
    LEASES_WON_FIELD_NUMBER: _ClassVar[int]
    BEST_PRICE_PER_GPU_HOUR_FIELD_NUMBER: _ClassVar[int]
    BEST_REVENUE_FIELD_NUMBER: _ClassVar[int]
    BEST_LEASES_WON_FIELD_NUMBER: _ClassVar[int]
    model: str
    auctions: int
    unleased: int
    current_price_per_gpu_hour: int
    earned: int
    leases_won: int
    best_price_per_gpu_hour: int
    best_revenue: int
    best_leases_won: int
    def __init__(self, model: _Optional[str] = ..., auctions: _Optional[int] = ..., unleased: _Optional[int] = ..., current_price_per_gpu_hour: _Optional[int] = ..., earned: _Optional[int] = ..., leases_won: _Optional[int] = ..., best_price_per_gpu_hour: _Optional[int] = ..., best_revenue: _Optional[int] = ..., best_leases_won: _Optional[int] = ...) -> None: ...

class PriceAdviceReport(_message.Message):
    __slots__ = ("provider", "since_ms", "until_ms", "models")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    since_ms: int
    until_ms: int
    models: _containers.RepeatedCompositeFieldContainer[ModelPriceAdvice]
    def __init__(self, provider: _Optional[str] = ..., since_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelPriceAdvice, _Mapping]]] = ...) -> None: ...
