//! The datapath: the eBPF object with its maps filled from a [`Layout`], first
//! [`Loaded`] (programs verified, nothing attached), then live ([`Datapath`]:
//! attached and pinned, or adopted from pins).

mod adopt;
mod attach;
pub mod batch;
mod bpf_sys;
pub mod build;
pub mod cpu_table;
pub mod footprint;
pub mod frozen_ranges;
mod link_update;
pub mod maps;
pub mod pin;
mod recreated;
pub mod sparse_control;
pub mod steering;
mod sync;
mod upgrade;

use aya::{
    maps::{Array, Map, MapError},
    programs::{ProgramError, SchedClassifier, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};

use vip_common::{
    cpu_table_stride, AttachMeta, RangeCounts, SparseControl, SparseSlot, Verdicts,
    CPU_TABLE_ALIGN, GLOBAL_DENSE_DROPPED, GLOBAL_DENSE_STRIDE, GLOBAL_RANGE_STRIDE,
    GLOBAL_SPARSE_HASH_KIND, GLOBAL_SPARSE_MASK, GLOBAL_SPARSE_MULTIPLIERS, GLOBAL_V6_BLOCK_MASK,
    MAP_ATTACH_META, MAP_DECAP, MAP_DECLARED, MAP_DELIVERED, MAP_DENSE_COUNTS, MAP_DENSE_STATS,
    MAP_POLICY, MAP_PORTS, MAP_PRESSURE, MAP_RANGES, MAP_RANGE_COUNTS, MAP_RANGE_META,
    MAP_RANGE_STATS, MAP_SPARSE_COLD, MAP_SPARSE_HOT, MAP_SPARSE_STATS, MAP_STEER,
    MAP_STEER_SOCKETS, MAP_STEER_STATS, MAP_V4_L2, MAP_V4_RANGES, MAP_V4_SLASH24, MAP_V6_BLOCKS,
    MAP_V6_RANGES, PINNED_MAPS, PROG_TC, PROG_XDP, SK_LOOKUP_LINK_PIN, V4_L2_BLOCK,
};

/// Slots per CPU of `MAP_SPARSE_STATS` and `MAP_DENSE_STATS` on a new
/// datapath: one page, as a CPU table needs at least.
const FROZEN_SLOTS_PER_CPU: u32 = CPU_TABLE_ALIGN / size_of::<SparseSlot>() as u32;
const FROZEN_DENSE_SLOTS_PER_CPU: u32 = CPU_TABLE_ALIGN / size_of::<Verdicts>() as u32;

pub use adopt::{adopt, attachments_differ, reattach_live, recorded_interfaces, AdoptError};
use attach::Programs;
pub use attach::{interface_name, AttachMode, Attachment};
use maps::{Maps, MapsError};
use pin::PinDir;
pub use upgrade::Moves;

use crate::{config::XdpMode, errors::Blame, layout::Layout};

/// The datapath object, built by `cargo xtask build`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("VIP_EBPF_OBJ"));

/// The embedded datapath object (ELF), e.g. for tests of its shape.
pub fn embedded_object() -> &'static [u8] {
    EBPF_OBJECT
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object: {0}")]
    Load(#[source] EbpfError),
    #[error("the eBPF object has no {kind} {name:?}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching to {interface} in {mode} mode: {source}")]
    Attach {
        interface: String,
        mode: AttachMode,
        #[source]
        source: ProgramError,
    },
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error("counting CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("drawing the sparse table's hash key: {0}")]
    Random(#[source] getrandom::Error),
    #[error("the pinned sparse table uses hash {kind}, which this vip does not know")]
    UnknownSparseHash { kind: u32 },
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(transparent)]
    RunFile(#[from] crate::run_files::RunFileError),
    #[error(
        "failing at {step}, as {} asks (a test hook)",
        crate::fault::FAIL_VARIABLE
    )]
    Fault { step: &'static str },
    #[error("{interface}: XDP attached through netlink, not a bpf_link (kernel before 5.9?), so it cannot stay attached across restarts; remove it with `ip link set dev {interface} xdp off`")]
    NotALink { interface: String },
    #[error("opening this process's network namespace: {source}")]
    Netns { source: std::io::Error },
    #[error("replacing the program attached to {what}: {source}")]
    Replace {
        what: String,
        source: std::io::Error,
    },
    #[error("detaching from {interface}: {source}")]
    Detach {
        interface: String,
        source: std::io::Error,
    },
}

impl Blame for DatapathError {
    fn is_user_error(&self) -> bool {
        match self {
            DatapathError::Pin(e) => e.is_user_error(),
            DatapathError::Maps(e) => e.is_user_error(),
            DatapathError::RunFile(e) => e.is_user_error(),
            _ => false,
        }
    }
}

/// A datapath that is live: attached and pinned by this process, or adopted
/// from the pins an earlier `vip run` left.
pub struct Datapath {
    maps: Maps,
    attachments: Vec<Attachment>,
    /// The sk_lookup program's link to the network namespace.
    steering: Option<attach::Link>,
    /// The loaded programs of a live datapath, kept to attach again to an
    /// interface that was deleted and created again (`recreated.rs`).
    programs: Option<Ebpf>,
}

/// A datapath this process loaded: maps filled, programs verified, nothing
/// attached yet. [`Loaded::pin`] makes it a live [`Datapath`].
pub struct Loaded {
    /// The programs (the maps are taken out into `datapath`).
    ebpf: Ebpf,
    datapath: Datapath,
}

impl Loaded {
    /// Loads the embedded object with maps sized for `layout` and `interfaces`,
    /// fills the range maps and loads (verifies) the programs.
    pub fn load(layout: &Layout, interfaces: &[String]) -> Result<Loaded, DatapathError> {
        Loaded::load_object(EBPF_OBJECT, layout, interfaces)
    }

    /// [`Loaded::load`] from another build of the datapath object (the bench's,
    /// which adds bench-only programs).
    pub fn load_object(
        object: &[u8],
        layout: &Layout,
        interfaces: &[String],
    ) -> Result<Loaded, DatapathError> {
        let control = sparse_control::new()?;
        Loaded::load_object_with_control(object, layout, interfaces, control)
    }

    /// [`Loaded::load_object`] with the sparse table on hash `hash_kind` (a
    /// `vip_common::SPARSE_HASH_*`) under `hash_key`, where a new datapath
    /// draws a key for the multiply hash: for tests that replay a run exactly,
    /// or load the fmix hash that an upgrade keeps of a datapath created by
    /// layout 9 or older.
    pub fn load_object_with_hash(
        object: &[u8],
        layout: &Layout,
        interfaces: &[String],
        hash_kind: u32,
        hash_key: u64,
    ) -> Result<Loaded, DatapathError> {
        let control = sparse_control::with_key(hash_kind, hash_key);
        Loaded::load_object_with_control(object, layout, interfaces, control)
    }

    fn load_object_with_control(
        object: &[u8],
        layout: &Layout,
        interfaces: &[String],
        control: SparseControl,
    ) -> Result<Loaded, DatapathError> {
        let (ebpf, mut maps) = open(object, layout, interfaces, None, &control)?;
        sync::sync(&mut maps, None, layout)?;
        sparse_control::write(&mut maps, control)?;
        build::record(&mut maps, object, 0)?;
        Loaded::verify(ebpf, maps)
    }

    /// Loads (verifies) the programs of an object whose maps are filled:
    /// the XDP and sk_lookup programs. The TC program is verified when
    /// something needs it ([`Loaded::verify_tc`], or a TC attachment): it
    /// takes a fifth of a start's verification, which an XDP-only datapath
    /// would spend for nothing.
    fn verify(mut ebpf: Ebpf, maps: Maps) -> Result<Loaded, DatapathError> {
        let programs = programs(&mut ebpf)?;
        programs
            .xdp
            .load()
            .map_err(|source| DatapathError::Program {
                program: PROG_XDP,
                source,
            })?;
        steering::load(&mut ebpf)?;
        Ok(Loaded {
            ebpf,
            datapath: Datapath {
                maps,
                attachments: Vec::new(),
                steering: None,
                programs: None,
            },
        })
    }

    pub fn maps(&self) -> &Maps {
        &self.datapath.maps
    }

    /// The maps, to write a state into for a test.
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.datapath.maps
    }

    /// Moves the maps from `old` to `new`, as on a live datapath.
    pub fn update(&mut self, old: &Layout, new: &Layout) -> Result<(), DatapathError> {
        self.datapath.update(old, &[], new)
    }

    /// Ages the sparse table by one sweep, as the daemon does.
    pub fn sweep_sparse(&mut self) -> Result<u32, DatapathError> {
        self.datapath.sweep_sparse()
    }

    /// The XDP program, e.g. for BPF_PROG_TEST_RUN.
    pub fn xdp(&mut self) -> &mut Xdp {
        self.programs().xdp
    }

    /// The TC program, verified on first use, e.g. for BPF_PROG_TEST_RUN.
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        let tc = self.programs().tc;
        attach::load_tc(tc)?;
        Ok(tc)
    }

    /// Verifies the TC program now, before anything changes, where an
    /// attachment will need it (`xdp_mode = "tc"`).
    pub fn verify_tc(&mut self) -> Result<(), DatapathError> {
        self.tc().map(drop)
    }

    fn programs(&mut self) -> Programs<'_> {
        programs(&mut self.ebpf).expect("checked when loaded")
    }

    /// A map of the object that is not one of the datapath's (a bench
    /// program's, in the bench object).
    pub fn object_map(&self, name: &str) -> Option<&Map> {
        self.ebpf.map(name)
    }

    /// Another XDP program of the object (the bench object's), loaded on first use.
    pub fn xdp_program(&mut self, name: &'static str) -> Result<&mut Xdp, DatapathError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|source| DatapathError::Program {
                program: name,
                source,
            })?;
        match program.load() {
            Ok(()) | Err(ProgramError::AlreadyLoaded) => Ok(program),
            Err(source) => Err(DatapathError::Program {
                program: name,
                source,
            }),
        }
    }

    /// Attaches to every interface, in order; on error, what was attached stays
    /// attached until this is dropped.
    pub fn attach_all(
        &mut self,
        interfaces: &[String],
        mode: XdpMode,
    ) -> Result<(), DatapathError> {
        for interface in interfaces {
            let attachment = attach::attach(&mut self.programs(), interface, mode)?;
            self.datapath.attachments.push(attachment);
        }
        self.datapath.record_attachments()
    }

    /// Attaches the sk_lookup program (socket steering, delivered counts) to
    /// this process's network namespace.
    pub fn attach_steering(&mut self) -> Result<(), DatapathError> {
        let link = steering::attach(&mut self.ebpf)?;
        self.datapath.steering = Some(link);
        Ok(())
    }

    /// Pins the maps and the links, so the datapath outlives this process: the
    /// live datapath. The last map pinned marks the pins complete (see
    /// [`pin::is_complete`]); on an error, dropping what is left detaches it.
    pub fn pin(self, pins: &PinDir) -> Result<Datapath, DatapathError> {
        let mut datapath = self.datapath;
        let (last, first) = PINNED_MAPS.split_last().expect("maps to pin");
        for &name in first {
            pins.pin_map(name, datapath.map(name)?)?;
        }
        datapath.attachments = std::mem::take(&mut datapath.attachments)
            .into_iter()
            .map(|mut attachment| {
                let name = pin::link_name(&attachment.interface);
                attachment.link = attachment.link.pinned(pins, &name)?;
                Ok(attachment)
            })
            .collect::<Result<_, pin::PinError>>()?;
        if let Some(link) = datapath.steering.take() {
            datapath.steering = Some(link.pinned(pins, SK_LOOKUP_LINK_PIN)?);
        }
        crate::fault::at("start-pinning");
        pins.pin_map(last, datapath.map(last)?)?;
        datapath.programs = Some(self.ebpf);
        Ok(datapath)
    }
}

impl Datapath {
    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    fn map(&self, name: &'static str) -> Result<&Map, DatapathError> {
        self.maps.map(name).ok_or(missing_map(name))
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Records the attachments in `MAP_ATTACH_META`, in order.
    fn record_attachments(&mut self) -> Result<(), DatapathError> {
        let mut meta: Array<_, AttachMeta> = self.maps.typed_mut(MAP_ATTACH_META)?;
        for (index, attachment) in self.attachments.iter().enumerate() {
            meta.set(index as u32, attachment.meta(), 0)
                .map_err(|source| DatapathError::Map {
                    map: MAP_ATTACH_META,
                    source,
                })?;
        }
        Ok(())
    }

    /// Whether every attachment stays when this process exits (no netlink TC
    /// filter, which kernels before 6.6 use and which cannot be pinned).
    pub fn outlives_its_daemon(&self) -> bool {
        self.attachments
            .iter()
            .all(|a| !matches!(a.link, attach::Link::TcNetlink(_)))
    }

    /// Moves the running datapath from `old` to `new` (from [`Layout::update`])
    /// through map updates only; nothing is detached. `through`: layouts of
    /// earlier moves whose writes failed, oldest first (the maps hold a mix
    /// of `old` and them), which the maps are moved to in turn first.
    pub fn update(
        &mut self,
        old: &Layout,
        through: &[Layout],
        new: &Layout,
    ) -> Result<(), DatapathError> {
        let mut from = old;
        for step in through.iter().chain([new]) {
            sync::sync(&mut self.maps, Some(from), step)?;
            from = step;
        }
        Ok(())
    }

    /// Ages the sparse table by one sweep generation; returns the new one.
    pub fn sweep_sparse(&mut self) -> Result<u32, DatapathError> {
        sparse_control::sweep(&mut self.maps)
    }

    /// The steer sockets map, for the steer agent.
    pub fn steer_sockets(&mut self) -> Result<&mut Map, DatapathError> {
        self.maps
            .map_mut(MAP_STEER_SOCKETS)
            .ok_or(missing_map(MAP_STEER_SOCKETS))
    }

    /// Detaches from every interface and from the network namespace.
    pub fn detach_all(&mut self) -> Result<(), DatapathError> {
        if let Some(link) = self.steering.take() {
            link.detach().map_err(|source| DatapathError::Detach {
                interface: "the network namespace".to_string(),
                source,
            })?;
        }
        for attachment in std::mem::take(&mut self.attachments) {
            let interface = attachment.interface;
            attachment
                .link
                .detach()
                .map_err(|source| DatapathError::Detach { interface, source })?;
        }
        Ok(())
    }
}

/// Loads `object` with maps sized for `layout` and `interfaces`; with
/// `pinned`, the maps pinned in that directory (all of vip's but the listed
/// ones) are used as they are, so the object's programs share the live
/// datapath's state. `control` is the sparse table's control entry the
/// programs will find (its hash becomes loader constants). Returns the
/// programs, not loaded yet, and the maps.
fn open(
    object: &[u8],
    layout: &Layout,
    interfaces: &[String],
    pinned: Option<(&std::path::Path, &[&str])>,
    control: &SparseControl,
) -> Result<(Ebpf, Maps), DatapathError> {
    let (hash_kind, multipliers) = sparse_control::globals(control)?;
    // MAP_DECAP is indexed by ifindex (an array lookup, which the verifier
    // inlines, where a hash lookup costs a helper call on every tunnel). An
    // interface that is gone (a reload while it waits to be created again)
    // has no ifindex yet: if it comes back beyond the map, the map is made
    // afresh then.
    let max_ifindex = interfaces
        .iter()
        .filter_map(|name| nix::net::if_::if_nametoindex(name.as_str()).ok())
        .max()
        .unwrap_or(0);
    let capacity = layout.capacity;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))? as u32;
    let pin_paths: Vec<(&'static str, std::path::PathBuf)> = match pinned {
        Some((dir, missing)) => PINNED_MAPS
            .iter()
            .filter(|name| !missing.contains(name))
            .map(|&name| (name, dir.join(name)))
            .collect(),
        None => Vec::new(),
    };
    let (dropped, mask) = (layout.dense_half(), layout.sparse_slots - 1);
    let stride = dropped * 2;
    let v6_block_mask = capacity.v6_blocks - 1;
    let range_stride = cpu_table_stride(capacity.ranges, size_of::<RangeCounts>() as u32);
    let mut loader = EbpfLoader::new();
    loader
        .override_global(GLOBAL_DENSE_STRIDE, &stride, true)
        .override_global(GLOBAL_DENSE_DROPPED, &dropped, true)
        .override_global(GLOBAL_SPARSE_MASK, &mask, true)
        .override_global(GLOBAL_SPARSE_HASH_KIND, &hash_kind, true)
        .override_global(GLOBAL_SPARSE_MULTIPLIERS, &multipliers, true)
        .override_global(GLOBAL_V6_BLOCK_MASK, &v6_block_mask, true)
        .override_global(GLOBAL_RANGE_STRIDE, &range_stride, true)
        .map_max_entries(MAP_V4_RANGES, capacity.ranges)
        .map_max_entries(MAP_V6_RANGES, capacity.ranges)
        .map_max_entries(MAP_RANGES, capacity.ranges)
        .map_max_entries(MAP_POLICY, capacity.ranges)
        .map_max_entries(MAP_PORTS, capacity.policies.saturating_mul(2).max(2))
        .map_max_entries(MAP_V4_L2, (capacity.l2_blocks * V4_L2_BLOCK).max(1))
        .map_max_entries(MAP_V4_SLASH24, (capacity.l2_blocks * V4_L2_BLOCK).max(1))
        .map_max_entries(MAP_V6_BLOCKS, capacity.v6_blocks)
        .map_max_entries(MAP_RANGE_COUNTS, range_stride * cpus)
        .map_max_entries(MAP_DECLARED, capacity.declared.max(1))
        .map_max_entries(MAP_RANGE_META, capacity.ranges)
        .map_max_entries(MAP_DENSE_COUNTS, stride * cpus)
        .map_max_entries(MAP_SPARSE_HOT, layout.sparse_slots * cpus)
        .map_max_entries(MAP_SPARSE_COLD, layout.sparse_slots * cpus)
        // Pinned, an upgraded datapath's tables keep their size (aya uses a
        // pin as it is); a new datapath's are never written.
        .map_max_entries(MAP_SPARSE_STATS, FROZEN_SLOTS_PER_CPU * cpus)
        .map_max_entries(MAP_DENSE_STATS, FROZEN_DENSE_SLOTS_PER_CPU * cpus)
        .map_max_entries(MAP_RANGE_STATS, 1)
        .map_max_entries(MAP_PRESSURE, 1)
        .map_max_entries(MAP_DELIVERED, 1)
        .map_max_entries(MAP_ATTACH_META, interfaces.len().max(1) as u32)
        .map_max_entries(MAP_DECAP, max_ifindex + 1)
        .map_max_entries(MAP_STEER, capacity.steers)
        .map_max_entries(MAP_STEER_SOCKETS, capacity.steers)
        .map_max_entries(MAP_STEER_STATS, capacity.steers);
    for (name, path) in &pin_paths {
        // An existing pin is used as it is (aya would pin a missing one, but
        // the list holds only pins that exist).
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(object).map_err(DatapathError::Load)?;
    let maps = Maps::take(&mut ebpf)?;
    Ok((ebpf, maps))
}

fn missing_map(name: &'static str) -> DatapathError {
    DatapathError::Missing { kind: "map", name }
}

fn programs(ebpf: &mut Ebpf) -> Result<Programs<'_>, DatapathError> {
    let (mut xdp, mut tc) = (None, None);
    for (name, program) in ebpf.programs_mut() {
        match name {
            PROG_XDP => xdp = Some(program),
            PROG_TC => tc = Some(program),
            _ => {}
        }
    }
    let missing = |name| DatapathError::Missing {
        kind: "program",
        name,
    };
    let typed = |program, source| DatapathError::Program { program, source };
    Ok(Programs {
        xdp: xdp
            .ok_or(missing(PROG_XDP))?
            .try_into()
            .map_err(|e| typed(PROG_XDP, e))?,
        tc: tc
            .ok_or(missing(PROG_TC))?
            .try_into()
            .map_err(|e| typed(PROG_TC, e))?,
    })
}
