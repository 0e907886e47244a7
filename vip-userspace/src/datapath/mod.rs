//! The loaded datapath: the eBPF object with its maps filled from a [`Layout`].

mod adopt;
mod attach;
pub mod cpu_table;
pub mod maps;
pub mod pin;
pub mod steering;
mod sync;

use aya::{
    maps::{Array, Map, MapError},
    programs::{ProgramError, SchedClassifier, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};

use vip_common::{
    AttachMeta, MAP_ATTACH_META, MAP_DECAP, MAP_DELIVERED, MAP_DENSE_STATS, MAP_POLICY, MAP_RANGES,
    MAP_RANGE_META, MAP_RANGE_STATS, MAP_SPARSE_STATS, MAP_STEER, MAP_STEER_SOCKETS,
    MAP_STEER_STATS, MAP_V4_L2, MAP_V4_RANGES, MAP_V6_RANGES, PINNED_MAPS, PROG_TC, PROG_XDP,
    SK_LOOKUP_LINK_PIN, V4_L2_BLOCK,
};

pub use adopt::{adopt, AdoptError};
use attach::Programs;
pub use attach::{interface_name, AttachMode, Attachment};
use cpu_table::CounterTables;
use maps::DatapathMaps;
use pin::PinDir;

use crate::{config::XdpMode, layout::Layout};

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
    #[error(transparent)]
    CpuTable(#[from] cpu_table::CpuTableError),
    #[error("{interface}: XDP attached through netlink, not a bpf_link (kernel before 5.9?), so it cannot stay attached across restarts; remove it with `ip link set dev {interface} xdp off`")]
    NotALink { interface: String },
    #[error("the datapath was adopted from pins: its programs were loaded by an earlier vip run")]
    NoPrograms,
    #[error("opening this process's network namespace: {source}")]
    Netns { source: std::io::Error },
    #[error("interface {interface} is gone")]
    NoInterface { interface: String },
    #[error("detaching from {interface}: {source}")]
    Detach {
        interface: String,
        source: std::io::Error,
    },
}

pub struct Datapath {
    maps: DatapathMaps,
    tables: CounterTables,
    attachments: Vec<Attachment>,
    /// The sk_lookup program's link to the network namespace.
    steering: Option<attach::Link>,
}

impl Datapath {
    /// Loads the object with maps sized for `layout` and `interfaces`, fills the
    /// range maps and loads (verifies) the programs. Nothing is attached yet.
    pub fn load(layout: &Layout, interfaces: &[String]) -> Result<Datapath, DatapathError> {
        // MAP_DECAP is indexed by ifindex (an array lookup, which the verifier
        // inlines, where a hash lookup costs a helper call on every tunnel).
        let max_ifindex = interfaces
            .iter()
            .map(|name| {
                nix::net::if_::if_nametoindex(name.as_str()).map_err(|_| {
                    DatapathError::NoInterface {
                        interface: name.clone(),
                    }
                })
            })
            .try_fold(0, |max, index| index.map(|i| max.max(i)))?;
        let capacity = layout.capacity;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))? as u32;
        let ebpf = EbpfLoader::new()
            .map_max_entries(MAP_V4_RANGES, capacity.ranges)
            .map_max_entries(MAP_V6_RANGES, capacity.ranges)
            .map_max_entries(MAP_RANGES, capacity.ranges)
            .map_max_entries(MAP_POLICY, capacity.ranges)
            .map_max_entries(MAP_V4_L2, (capacity.l2_blocks * V4_L2_BLOCK).max(1))
            .map_max_entries(MAP_RANGE_STATS, capacity.ranges)
            .map_max_entries(MAP_RANGE_META, capacity.ranges)
            .map_max_entries(MAP_DENSE_STATS, layout.dense_stride() * cpus)
            .map_max_entries(MAP_SPARSE_STATS, layout.sparse_slots * cpus)
            .map_max_entries(MAP_ATTACH_META, interfaces.len().max(1) as u32)
            .map_max_entries(MAP_DECAP, max_ifindex + 1)
            .map_max_entries(MAP_STEER, capacity.steers)
            .map_max_entries(MAP_STEER_SOCKETS, capacity.steers)
            .map_max_entries(MAP_STEER_STATS, capacity.steers)
            .map_max_entries(MAP_DELIVERED, capacity.ranges)
            .load(EBPF_OBJECT)
            .map_err(DatapathError::Load)?;
        let mut tables = CounterTables::open(|name| ebpf.map(name), true)?;
        let mut maps = DatapathMaps::Loaded(ebpf);
        sync::sync(&mut maps, &mut tables, None, layout)?;
        let DatapathMaps::Loaded(ebpf) = &mut maps else {
            unreachable!("just loaded")
        };
        let programs = programs(ebpf)?;
        programs
            .xdp
            .load()
            .map_err(|source| DatapathError::Program {
                program: PROG_XDP,
                source,
            })?;
        programs
            .tc
            .load()
            .map_err(|source| DatapathError::Program {
                program: PROG_TC,
                source,
            })?;
        steering::load(ebpf)?;
        Ok(Datapath {
            maps,
            tables,
            attachments: Vec::new(),
            steering: None,
        })
    }

    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.map(name)
    }

    /// The per-VIP counter tables, mapped.
    pub fn tables(&self) -> &CounterTables {
        &self.tables
    }

    /// The loaded XDP program, e.g. for BPF_PROG_TEST_RUN.
    pub fn xdp(&mut self) -> Result<&mut Xdp, DatapathError> {
        programs(self.ebpf()?).map(|p| p.xdp)
    }

    /// The loaded TC program, e.g. for BPF_PROG_TEST_RUN.
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        programs(self.ebpf()?).map(|p| p.tc)
    }

    /// A bench-only XDP program (`PROG_BENCH_DECAP` or `PROG_BENCH_HARNESS`),
    /// loaded on first use.
    pub fn bench_program(&mut self, name: &'static str) -> Result<&mut Xdp, DatapathError> {
        let program: &mut Xdp = self
            .ebpf()?
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

    fn ebpf(&mut self) -> Result<&mut Ebpf, DatapathError> {
        match &mut self.maps {
            DatapathMaps::Loaded(ebpf) => Ok(ebpf),
            DatapathMaps::Pinned(_) => Err(DatapathError::NoPrograms),
        }
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Attaches to every interface, in order; on error, what was attached stays
    /// attached until the datapath is dropped.
    pub fn attach_all(
        &mut self,
        interfaces: &[String],
        mode: XdpMode,
    ) -> Result<(), DatapathError> {
        for interface in interfaces {
            let attachment = attach::attach(&mut programs(self.ebpf()?)?, interface, mode)?;
            self.attachments.push(attachment);
        }
        let mut meta: Array<_, AttachMeta> = typed_map_mut(&mut self.maps, MAP_ATTACH_META)?;
        for (index, attachment) in self.attachments.iter().enumerate() {
            meta.set(index as u32, attachment.meta(), 0)
                .map_err(|source| DatapathError::Map {
                    map: MAP_ATTACH_META,
                    source,
                })?;
        }
        Ok(())
    }

    /// Moves the running datapath from `old` to `new` (from [`Layout::update`])
    /// through map updates only; nothing is detached.
    pub fn update(&mut self, old: &Layout, new: &Layout) -> Result<(), DatapathError> {
        sync::sync(&mut self.maps, &mut self.tables, Some(old), new)
    }

    /// Attaches the sk_lookup program (socket steering, delivered counts) to
    /// this process's network namespace.
    pub fn attach_steering(&mut self) -> Result<(), DatapathError> {
        let link = steering::attach(self.ebpf()?)?;
        self.steering = Some(link);
        Ok(())
    }

    /// The steer sockets map, for the steer agent.
    pub fn steer_sockets(&mut self) -> Result<&mut aya::maps::Map, DatapathError> {
        self.maps
            .map_mut(MAP_STEER_SOCKETS)
            .ok_or(missing_map(MAP_STEER_SOCKETS))
    }

    /// Pins the maps and the links, so the datapath outlives this process. The
    /// last map pinned marks the pins complete (see [`pin::is_complete`]).
    pub fn pin(&mut self, pins: &PinDir) -> Result<(), DatapathError> {
        let (last, first) = PINNED_MAPS.split_last().expect("maps to pin");
        for &name in first {
            pins.pin_map(name, self.map(name).ok_or(missing_map(name))?)?;
        }
        // On an error, the links not pinned yet are dropped, which detaches them.
        self.attachments = std::mem::take(&mut self.attachments)
            .into_iter()
            .map(|mut attachment| {
                let name = pin::link_name(&attachment.interface);
                attachment.link = attachment.link.pinned(pins, &name)?;
                Ok(attachment)
            })
            .collect::<Result<_, pin::PinError>>()?;
        if let Some(link) = self.steering.take() {
            self.steering = Some(link.pinned(pins, SK_LOOKUP_LINK_PIN)?);
        }
        pins.pin_map(last, self.map(last).ok_or(missing_map(last))?)?;
        Ok(())
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

fn missing_map(name: &'static str) -> DatapathError {
    DatapathError::Missing { kind: "map", name }
}

fn typed_map_mut<'a, T>(maps: &'a mut DatapathMaps, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = maps
        .map_mut(name)
        .ok_or(DatapathError::Missing { kind: "map", name })?;
    T::try_from(map).map_err(|source| DatapathError::Map { map: name, source })
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
