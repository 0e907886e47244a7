//! The loaded datapath: the eBPF object with its maps filled from a [`Layout`].

mod attach;
pub mod cpu_table;
pub mod pin;
mod sync;

use aya::{
    maps::{Array, MapError},
    programs::{ProgramError, SchedClassifier, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};

use vip_common::{
    AttachMeta, MAP_ATTACH_META, MAP_DENSE_STATS, MAP_POLICY, MAP_RANGES, MAP_RANGE_META,
    MAP_RANGE_STATS, MAP_SPARSE_STATS, MAP_V4_L2, MAP_V4_RANGES, MAP_V6_RANGES, PROG_TC, PROG_XDP,
    V4_L2_BLOCK,
};

pub use attach::{AttachMode, Attachment};
use attach::{Link, Programs};
use cpu_table::CounterTables;

use crate::{config::XdpMode, layout::Layout};

/// The datapath object, built by `cargo xtask build`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("VIP_EBPF_OBJ"));

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
}

pub struct Datapath {
    ebpf: Ebpf,
    tables: CounterTables,
    attachments: Vec<Attachment>,
}

impl Datapath {
    /// Loads the object with maps sized for `layout`, fills the range maps and
    /// loads (verifies) the XDP program. Nothing is attached yet.
    pub fn load(layout: &Layout, interfaces: usize) -> Result<Datapath, DatapathError> {
        let capacity = layout.capacity;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))? as u32;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_V4_RANGES, capacity.ranges)
            .map_max_entries(MAP_V6_RANGES, capacity.ranges)
            .map_max_entries(MAP_RANGES, capacity.ranges)
            .map_max_entries(MAP_POLICY, capacity.ranges)
            .map_max_entries(MAP_V4_L2, (capacity.l2_blocks * V4_L2_BLOCK).max(1))
            .map_max_entries(MAP_RANGE_STATS, capacity.ranges)
            .map_max_entries(MAP_RANGE_META, capacity.ranges)
            .map_max_entries(MAP_DENSE_STATS, layout.dense_stride() * cpus)
            .map_max_entries(MAP_SPARSE_STATS, layout.sparse_slots * cpus)
            .map_max_entries(MAP_ATTACH_META, interfaces.max(1) as u32)
            .load(EBPF_OBJECT)
            .map_err(DatapathError::Load)?;
        let mut tables = CounterTables::open(|name| ebpf.map(name), true)?;
        sync::sync(&mut ebpf, &mut tables, None, layout)?;
        let programs = programs(&mut ebpf)?;
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
        Ok(Datapath {
            ebpf,
            tables,
            attachments: Vec::new(),
        })
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The per-VIP counter tables, mapped.
    pub fn tables(&self) -> &CounterTables {
        &self.tables
    }

    /// The loaded XDP program, e.g. for BPF_PROG_TEST_RUN.
    pub fn xdp(&mut self) -> Result<&mut Xdp, DatapathError> {
        programs(&mut self.ebpf).map(|p| p.xdp)
    }

    /// The loaded TC program, e.g. for BPF_PROG_TEST_RUN.
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        programs(&mut self.ebpf).map(|p| p.tc)
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
            let attachment = attach::attach(&mut programs(&mut self.ebpf)?, interface, mode)?;
            self.attachments.push(attachment);
        }
        let mut meta: Array<_, AttachMeta> = typed_map_mut(&mut self.ebpf, MAP_ATTACH_META)?;
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
        sync::sync(&mut self.ebpf, &mut self.tables, Some(old), new)
    }

    /// Detaches from every interface.
    pub fn detach_all(&mut self) -> Result<(), DatapathError> {
        let attachments = std::mem::take(&mut self.attachments);
        let programs = programs(&mut self.ebpf)?;
        for attachment in attachments {
            let (program, result) = match attachment.link {
                Link::Xdp(link) => (PROG_XDP, programs.xdp.detach(link)),
                Link::Tc(link) => (PROG_TC, programs.tc.detach(link)),
            };
            result.map_err(|source| DatapathError::Program { program, source })?;
        }
        Ok(())
    }
}

fn typed_map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf
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
