//! The loaded datapath: the eBPF object with its maps filled from a [`Layout`].

mod attach;
pub mod pin;

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapError},
    programs::{ProgramError, SchedClassifier, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};
use ipnet::IpNet;
use vip_common::{
    AttachMeta, RangeMeta, RangePolicy, RangeValue, MAP_ATTACH_META, MAP_DENSE_STATS, MAP_POLICY,
    MAP_RANGES, MAP_RANGE_META, MAP_RANGE_STATS, MAP_SPARSE_STATS, MAP_V4_L1, MAP_V4_L2,
    MAP_V4_RANGES, MAP_V6_RANGES, PROG_TC, PROG_XDP,
};

pub use attach::{AttachMode, Attachment};
use attach::{Link, Programs};

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
}

pub struct Datapath {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
}

impl Datapath {
    /// Loads the object with maps sized for `layout`, fills the range maps and
    /// loads (verifies) the XDP program. Nothing is attached yet.
    pub fn load(layout: &Layout, interfaces: usize) -> Result<Datapath, DatapathError> {
        let ranges = layout.ranges.len() as u32;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_V4_RANGES, layout.v4_count().max(1))
            .map_max_entries(MAP_V6_RANGES, layout.v6_count().max(1))
            .map_max_entries(MAP_RANGES, ranges)
            .map_max_entries(MAP_POLICY, ranges)
            .map_max_entries(MAP_V4_L2, layout.v4_index.l2_len())
            .map_max_entries(MAP_RANGE_STATS, ranges)
            .map_max_entries(MAP_RANGE_META, ranges)
            .map_max_entries(MAP_DENSE_STATS, layout.dense_slots)
            .map_max_entries(MAP_SPARSE_STATS, layout.sparse_vip_capacity)
            .map_max_entries(MAP_ATTACH_META, interfaces.max(1) as u32)
            .load(EBPF_OBJECT)
            .map_err(DatapathError::Load)?;
        fill_ranges(&mut ebpf, layout)?;
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
            attachments: Vec::new(),
        })
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
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

fn fill_ranges(ebpf: &mut Ebpf, layout: &Layout) -> Result<(), DatapathError> {
    let map_err = |map| move |source| DatapathError::Map { map, source };
    {
        let mut v4: LpmTrie<_, [u8; 4], RangeValue> = typed_map_mut(ebpf, MAP_V4_RANGES)?;
        for slot in &layout.ranges {
            if let IpNet::V4(net) = slot.cidr {
                let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
                v4.insert(&key, slot.value, 0)
                    .map_err(map_err(MAP_V4_RANGES))?;
            }
        }
    }
    {
        let mut v6: LpmTrie<_, [u8; 16], RangeValue> = typed_map_mut(ebpf, MAP_V6_RANGES)?;
        for slot in &layout.ranges {
            if let IpNet::V6(net) = slot.cidr {
                let key = Key::new(u32::from(net.prefix_len()), net.network().octets());
                v6.insert(&key, slot.value, 0)
                    .map_err(map_err(MAP_V6_RANGES))?;
            }
        }
    }
    {
        let mut values: Array<_, RangeValue> = typed_map_mut(ebpf, MAP_RANGES)?;
        for slot in &layout.ranges {
            values
                .set(slot.value.range_id, slot.value, 0)
                .map_err(map_err(MAP_RANGES))?;
        }
    }
    {
        let mut policies: Array<_, RangePolicy> = typed_map_mut(ebpf, MAP_POLICY)?;
        for slot in &layout.ranges {
            policies
                .set(slot.value.range_id, slot.policy, 0)
                .map_err(map_err(MAP_POLICY))?;
        }
    }
    {
        let index = &layout.v4_index;
        let mut l2: Array<_, u32> = typed_map_mut(ebpf, MAP_V4_L2)?;
        for (i, &value) in index.l2.iter().enumerate() {
            if value != 0 {
                l2.set(i as u32, value, 0).map_err(map_err(MAP_V4_L2))?;
            }
        }
        // Level 1 last: a /16 only points at level 2 once its block is complete.
        let mut l1: Array<_, u32> = typed_map_mut(ebpf, MAP_V4_L1)?;
        for &(slash16, block) in &index.l1 {
            l1.set(slash16, block, 0).map_err(map_err(MAP_V4_L1))?;
        }
    }
    let mut meta: Array<_, RangeMeta> = typed_map_mut(ebpf, MAP_RANGE_META)?;
    for slot in &layout.ranges {
        meta.set(slot.value.range_id, slot.meta(), 0)
            .map_err(map_err(MAP_RANGE_META))?;
    }
    Ok(())
}
