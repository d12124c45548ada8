//! The tt-metal symbols tracer relies on (mangled, as in the binary).

pub const TRACK_ALLOCATE: &str = "_ZN2tt8tt_metal12GraphTracker14track_allocateEPKNS0_6BufferE";
pub const TRACK_DEALLOCATE: &str = "_ZN2tt8tt_metal12GraphTracker16track_deallocateEPNS0_6BufferE";
pub const DEVICE_CLOSE: &str = "_ZN2tt8tt_metal6Device5closeEv";
pub const MESH_DEVICE_CLOSE: &str = "_ZN2tt8tt_metal11distributed10MeshDevice5closeEv";
pub const DEVICE_ID: &str = "_ZNK2tt8tt_metal6Device2idEv";
pub const MESH_GET_DEVICES: &str = "_ZNK2tt8tt_metal11distributed10MeshDevice11get_devicesEv";
pub const VIEW_GET_DEVICES: &str = "_ZNK2tt8tt_metal11distributed14MeshDeviceView11get_devicesEv";
pub const DEVICE_VTABLE: &str = "_ZTVN2tt8tt_metal6DeviceE";
pub const MESH_DEVICE_VTABLE: &str = "_ZTVN2tt8tt_metal11distributed10MeshDeviceE";

pub const BUFFER_DEVICE: &str = "_ZNK2tt8tt_metal6Buffer6deviceEv";
pub const BUFFER_ADDRESS: &str = "_ZNK2tt8tt_metal6Buffer7addressEv";
pub const BUFFER_SIZE: &str = "_ZNK2tt8tt_metal6Buffer4sizeEv";
pub const BUFFER_PAGE_SIZE: &str = "_ZNK2tt8tt_metal6Buffer9page_sizeEv";
pub const BUFFER_TYPE: &str = "_ZNK2tt8tt_metal6Buffer11buffer_typeEv";
pub const BUFFER_UNIQUE_ID: &str = "_ZNK2tt8tt_metal6Buffer9unique_idEv";
/// `Buffer::buffer_layout() const`: interleaved or sharded (`TensorMemoryLayout`).
pub const BUFFER_LAYOUT: &str = "_ZNK2tt8tt_metal6Buffer13buffer_layoutEv";

/// `Buffer::num_dev_pages() const`: pages per shard of a sharded buffer (runtime/x86/shard.rs).
pub const BUFFER_NUM_DEV_PAGES: &str = "_ZNK2tt8tt_metal6Buffer13num_dev_pagesEv";

/// Demangled prefixes of constructors whose stores reveal field offsets when accessors are
/// inlined away.
/// (mangled prefix, demangled prefix) pairs: the mangled one keeps the search cheap.
pub const BUFFER_CTOR: (&str, &str) = (
    "_ZN2tt8tt_metal6BufferC",
    "tt::tt_metal::Buffer::Buffer(tt::tt_metal::IDevice*",
);
pub const BUFFER_IMPL_CTOR: (&str, &str) = (
    "_ZN2tt8tt_metal10BufferImplC",
    "tt::tt_metal::BufferImpl::BufferImpl(tt::tt_metal::IDevice*",
);
pub const BANK_MANAGER_CTOR: (&str, &str) = (
    "_ZN2tt8tt_metal11BankManagerC",
    "tt::tt_metal::BankManager::BankManager(",
);

/// Lifecycle: probed at entry, once per device / mesh open.
pub const DEVICE_INITIALIZE: (&str, &str) = (
    "_ZN2tt8tt_metal6Device10initialize",
    "tt::tt_metal::Device::initialize(",
);
pub const MESH_DEVICE_INITIALIZE: (&str, &str) = (
    "_ZN2tt8tt_metal11distributed10MeshDevice10initialize",
    "tt::tt_metal::distributed::MeshDevice::initialize(",
);
/// What `MeshDevice::create` really calls (`MeshDevice::initialize` is only a wrapper).
pub const MESH_DEVICE_INITIALIZE_IMPL: (&str, &str) = (
    "_ZN2tt8tt_metal11distributed14MeshDeviceImpl15initialize_impl",
    "tt::tt_metal::distributed::MeshDeviceImpl::initialize_impl(",
);
/// Mesh shape: accessors that tail-call the view's, which tail-call `Shape2D`'s.
pub const MESH_NUM_ROWS: [&str; 3] = [
    "_ZNK2tt8tt_metal11distributed10MeshDevice8num_rowsEv",
    "_ZNK2tt8tt_metal11distributed14MeshDeviceView8num_rowsEv",
    "_ZNK2tt8tt_metal7Shape2D6heightEv",
];
pub const MESH_NUM_COLS: [&str; 3] = [
    "_ZNK2tt8tt_metal11distributed10MeshDevice8num_colsEv",
    "_ZNK2tt8tt_metal11distributed14MeshDeviceView8num_colsEv",
    "_ZNK2tt8tt_metal7Shape2D5widthEv",
];

/// Allocator geometry of a live process (read after a mid-run attach, when the bank managers'
/// constructors ran before the probes): probed on entry of the allocator's `allocate_buffer`,
/// read from its bank manager per type, the manager's alignment and its sub-allocators'
/// minimum block.
pub const ALLOCATOR_ALLOCATE_BUFFER: &str =
    "_ZN2tt8tt_metal13AllocatorImpl15allocate_bufferEPNS0_6BufferE";
pub const ALLOCATOR_NUM_BANKS: &str =
    "_ZNK2tt8tt_metal13AllocatorImpl13get_num_banksERKNS0_10BufferTypeE";
pub const BANK_MANAGER_INIT_ALLOCATORS: &str = "_ZN2tt8tt_metal11BankManager15init_allocatorsEmjm";
pub const FREE_LIST_CTOR: (&str, &str) = (
    "_ZN2tt8tt_metal9allocator11FreeListOptC",
    "tt::tt_metal::allocator::FreeListOpt::FreeListOpt(",
);

/// Circular buffers: placed per CB and device when a program first runs there
/// (`GraphTracker::track_allocate_cb(CoreRangeSet const&, addr, size, globally_allocated,
/// IDevice const*)`), owned by the program registered with the device right after, and gone
/// when the program unregisters (its destruction).
pub const TRACK_ALLOCATE_CB: &str =
    "_ZN2tt8tt_metal12GraphTracker17track_allocate_cbERKNS0_12CoreRangeSetEmmbPKNS0_7IDeviceE";
pub const DEVICE_REGISTER_PROGRAM: &str =
    "_ZN2tt8tt_metal6Device16register_programEPNS0_6detail11ProgramImplE";
pub const DEVICE_UNREGISTER_PROGRAM: &str =
    "_ZN2tt8tt_metal6Device18unregister_programEPNS0_6detail11ProgramImplE";
/// Core range layout: the set's vector of ranges and a range's corners.
pub const CORE_RANGE_SET_RANGES: &str = "_ZNK2tt8tt_metal12CoreRangeSet6rangesEv";
pub const CORE_RANGE_SET_NUM_CORES: &str = "_ZNK2tt8tt_metal12CoreRangeSet9num_coresEv";
pub const CORE_RANGE_SIZE: &str = "_ZNK2tt8tt_metal9CoreRange4sizeEv";
pub const CORE_RANGE_GRID_SIZE: &str = "_ZNK2tt8tt_metal9CoreRange9grid_sizeEv";
