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
/// `BufferShardingArgs::buffer_layout() const`: where the constructor's sharding argument
/// keeps the layout it copies into the buffer.
pub const SHARDING_ARGS_LAYOUT: &str = "_ZNK2tt8tt_metal18BufferShardingArgs13buffer_layoutEv";
/// `Buffer::impl() const`: the `BufferImpl` behind a `Buffer` (the pimpl era).
pub const BUFFER_IMPL: &str = "_ZNK2tt8tt_metal6Buffer4implEv";

/// Functions that read `Buffer` fields without returning them: each one is a second source of
/// a field, independent of its accessor being out of line.
/// `is_dram()`/`is_l1()` test the buffer type; `num_pages()` divides the size by the page size.
pub const BUFFER_IS_DRAM: &str = "_ZNK2tt8tt_metal6Buffer7is_dramEv";
pub const BUFFER_IS_L1: &str = "_ZNK2tt8tt_metal6Buffer5is_l1Ev";
pub const BUFFER_NUM_PAGES: &str = "_ZNK2tt8tt_metal6Buffer9num_pagesEv";
/// Stores the address the allocator returns, and hands the device to `extract_context_id`.
pub const BUFFER_ALLOCATE_IMPL: &str = "_ZN2tt8tt_metal6Buffer13allocate_implEv";
pub const BUFFER_IMPL_ALLOCATE_IMPL: &str =
    "_ZN2tt8tt_metal10BufferImpl13allocate_implERNS0_6BufferE";
/// The one caller of `track_deallocate` in the pimpl era: it keeps its `this` in a
/// callee-saved register across the call (runtime/free_object.rs).
pub const BUFFER_IMPL_DEALLOCATE_IMPL: &str =
    "_ZN2tt8tt_metal10BufferImpl15deallocate_implERNS0_6BufferE";
pub const EXTRACT_CONTEXT_ID: &str = "_ZN2tt8tt_metal18extract_context_idEPKNS0_7IDeviceE";
/// Light Metal capture keys its buffer map by `Buffer::unique_id()`.
pub const LIGHT_METAL_IS_IN_MAP: &str =
    "_ZN2tt8tt_metal24LightMetalCaptureContext9is_in_mapEPKNS0_6BufferE";
/// `Device::Device(MetalEnv*, MetalContext*, int device_id, ...)` stores the id.
pub const DEVICE_CTOR: (&str, &str) = ("_ZN2tt8tt_metal6DeviceC", "tt::tt_metal::Device::Device(");
/// `MeshDevice::get_device(int) const` walks the devices vector `get_devices()` copies;
/// `MeshDevice::get_view() const` is the view `get_devices()` may delegate to.
pub const MESH_GET_DEVICE: &str = "_ZNK2tt8tt_metal11distributed10MeshDevice10get_deviceEi";
pub const MESH_GET_VIEW: &str = "_ZNK2tt8tt_metal11distributed10MeshDevice8get_viewEv";

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
/// Second sources of the bank managers, the bank count and the sub-allocators vector.
pub const ALLOCATOR_RESET_SIZE: &str =
    "_ZN2tt8tt_metal13AllocatorImpl20reset_allocator_sizeERKNS0_10BufferTypeE";
pub const BANK_MANAGER_RESET_SIZE: &str =
    "_ZN2tt8tt_metal11BankManager10reset_sizeEN4ttsl10StrongTypeIjNS0_14AllocatorIDTagEEE";
pub const BANK_MANAGER_NUM_BANKS: &str = "_ZNK2tt8tt_metal11BankManager9num_banksEv";
pub const BANK_MANAGER_ALLOCATOR_FROM_ID: &str =
    "_ZNK2tt8tt_metal11BankManager21get_allocator_from_idEN4ttsl10StrongTypeIjNS0_14AllocatorIDTagEEE";
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

/// The hops from a device object to the buffers its allocators hold (runtime/held.rs):
/// `MeshDevice::allocator_impl() const` hands on to its implementation object's, which asks the
/// sub-device manager tracker for its default manager and that manager for its allocator;
/// `Device::allocator_impl() const` returns its own allocator member.
pub const MESH_ALLOCATOR_IMPL: &str = "_ZNK2tt8tt_metal11distributed10MeshDevice14allocator_implEv";
pub const MESH_IMPL_ALLOCATOR_IMPL: &str =
    "_ZNK2tt8tt_metal11distributed14MeshDeviceImpl14allocator_implEv";
pub const TRACKER_DEFAULT_MANAGER: &str =
    "_ZNK2tt8tt_metal23SubDeviceManagerTracker30get_default_sub_device_managerEv";
pub const SUB_DEVICE_MANAGER_ALLOCATOR: &str =
    "_ZNK2tt8tt_metal16SubDeviceManager9allocatorEN4ttsl10StrongTypeIhNS0_14SubDeviceIdTagEEE";
pub const DEVICE_ALLOCATOR_IMPL: &str = "_ZNK2tt8tt_metal6Device14allocator_implEv";
/// The allocator's set of allocated buffers: copied by `get_allocated_buffers() const`, its
/// element count returned by `get_num_allocated_buffers() const`.
pub const ALLOCATOR_ALLOCATED_BUFFERS: &str =
    "_ZNK2tt8tt_metal13AllocatorImpl21get_allocated_buffersEv";
pub const ALLOCATOR_NUM_ALLOCATED_BUFFERS: &str =
    "_ZNK2tt8tt_metal13AllocatorImpl25get_num_allocated_buffersEv";
/// Second sources of the same hops: the default manager's id goes through the tracker and the
/// default manager too; `sub_device_allocator` offsets into the allocators vector; the
/// per-sub-device `Device::allocator_impl` returns the same member.
pub const MESH_IMPL_DEFAULT_MANAGER_ID: &str =
    "_ZNK2tt8tt_metal11distributed14MeshDeviceImpl33get_default_sub_device_manager_idEv";
pub const TRACKER_DEFAULT_MANAGER_ID: &str =
    "_ZNK2tt8tt_metal23SubDeviceManagerTracker33get_default_sub_device_manager_idEv";
pub const SUB_DEVICE_ALLOCATOR: &str =
    "_ZN2tt8tt_metal16SubDeviceManager20sub_device_allocatorEN4ttsl10StrongTypeIhNS0_14SubDeviceIdTagEEE";
pub const DEVICE_ALLOCATOR_IMPL_OF: &str =
    "_ZNK2tt8tt_metal6Device14allocator_implEN4ttsl10StrongTypeIhNS0_14SubDeviceIdTagEEE";

/// The programs a device holds and their circular buffers (runtime/programs.rs): the set of
/// `ProgramImpl*` `Device::register_program` inserts into (and `unregister_program` erases
/// from), each program's vector of `shared_ptr<CircularBufferImpl>` (returned as a span by
/// `ProgramImpl::circular_buffers() const`, copied by `Program::circular_buffers() const`),
/// and a CB's fields, read by the `CircularBuffer` accessors (through its pointer to the
/// implementation) and the `CircularBufferImpl` methods.
pub const PROGRAM_IMPL_CIRCULAR_BUFFERS: &str =
    "_ZNK2tt8tt_metal6detail11ProgramImpl16circular_buffersEv";
pub const PROGRAM_CIRCULAR_BUFFERS: &str = "_ZNK2tt8tt_metal7Program16circular_buffersEv";
pub const CB_CORE_RANGES: &str = "_ZNK2tt8tt_metal14CircularBuffer11core_rangesEv";
pub const CB_SIZE: &str = "_ZNK2tt8tt_metal14CircularBuffer4sizeEv";
pub const CB_GLOBALLY_ALLOCATED: &str = "_ZNK2tt8tt_metal14CircularBuffer18globally_allocatedEv";
pub const CB_IMPL_ADDRESS: &str = "_ZNK2tt8tt_metal18CircularBufferImpl7addressEv";
pub const CB_IMPL_ASSIGN_GLOBAL_ADDRESS: &str =
    "_ZN2tt8tt_metal18CircularBufferImpl21assign_global_addressEv";
pub const CB_IMPL_NUM_PAGES: &str = "_ZNK2tt8tt_metal18CircularBufferImpl9num_pagesEj";
pub const CB_IMPL_ON_CORE_RANGE: &str =
    "_ZNK2tt8tt_metal18CircularBufferImpl23is_on_logical_corerangeERKNS0_9CoreRangeE";
pub const CB_IMPL_ON_CORE: &str =
    "_ZNK2tt8tt_metal18CircularBufferImpl18is_on_logical_coreERKNS_7xy_pairE";
