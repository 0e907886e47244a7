//! The sk_lookup program, attached to this network namespace (its link is
//! pinned beside the maps, so that steering outlives a daemon restart).

use std::fs::File;

use aya::{
    maps::{Map, SockMap},
    programs::{links::FdLink, SkLookup},
    Ebpf,
};
use vip_common::{MAP_STEER_SOCKETS, PROG_SK_LOOKUP};

use super::{attach::Link, DatapathError};

const OWN_NETNS: &str = "/proc/self/ns/net";

pub(super) fn load(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    program(ebpf)?
        .load()
        .map_err(|source| DatapathError::Program {
            program: PROG_SK_LOOKUP,
            source,
        })
}

pub(super) fn program(ebpf: &mut Ebpf) -> Result<&mut SkLookup, DatapathError> {
    ebpf.program_mut(PROG_SK_LOOKUP)
        .ok_or(DatapathError::Missing {
            kind: "program",
            name: PROG_SK_LOOKUP,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program {
            program: PROG_SK_LOOKUP,
            source,
        })
}

/// Attaches to the namespace this process runs in.
pub(super) fn attach(ebpf: &mut Ebpf) -> Result<Link, DatapathError> {
    let netns = File::open(OWN_NETNS).map_err(|source| DatapathError::Netns { source })?;
    let program = program(ebpf)?;
    let error = |source| DatapathError::Program {
        program: PROG_SK_LOOKUP,
        source,
    };
    let id = program.attach(netns).map_err(error)?;
    let link = program.take_link(id).map_err(error)?;
    Ok(Link::Fd(FdLink::from(link)))
}

/// The steer sockets map, for the steer agent.
pub fn sockets(map: &mut Map) -> Result<SockMap<&mut aya::maps::MapData>, DatapathError> {
    SockMap::try_from(map).map_err(|source| DatapathError::Map {
        map: MAP_STEER_SOCKETS,
        source,
    })
}
