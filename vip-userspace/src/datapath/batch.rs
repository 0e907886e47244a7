//! Reading a whole array map in one BPF_MAP_LOOKUP_BATCH call rather than a
//! lookup per entry: `vip stats` and every `/metrics` scrape read four
//! per-range maps, and with 10,000 ranges one syscall per entry was about
//! 40,000 syscalls a scrape. aya 0.14 has no batch operations.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::maps::Map;

use super::bpf_sys::{bpf, BPF_MAP_LOOKUP_BATCH};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("map {map} is not a {expected}")]
    Kind {
        map: &'static str,
        expected: &'static str,
    },
    #[error("map {map} has {size}-byte values, this vip reads {expected}")]
    ValueSize {
        map: &'static str,
        size: u32,
        expected: usize,
    },
    #[error("map {map}: {source}")]
    Info {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("reading map {map} (BPF_MAP_LOOKUP_BATCH): {source}")]
    Lookup {
        map: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("map {map}: the kernel returned key {key} of {entries}")]
    Key {
        map: &'static str,
        key: u32,
        entries: u32,
    },
    #[error("map {map}: the kernel returned {read} of its {entries} entries")]
    Short {
        map: &'static str,
        read: u32,
        entries: u32,
    },
    #[error("counting CPUs: {0}")]
    Cpus(#[source] io::Error),
}

/// `union bpf_attr` for the BPF_MAP_*_BATCH commands.
#[repr(C)]
struct Batch {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of an array map: for a per-CPU array, one value per possible
/// CPU of each key.
pub struct Rows<T> {
    per_key: usize,
    values: Vec<T>,
}

impl<T> Rows<T> {
    /// Key `key`'s values (one per CPU for a per-CPU array), if the map has it.
    pub fn get(&self, key: u32) -> Option<&[T]> {
        let start = (key as usize).checked_mul(self.per_key)?;
        self.values.get(start..start + self.per_key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.values.len() / self.per_key
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Every entry of the plain array `map`.
pub fn array<T: bytemuck::Pod>(map: &Map, name: &'static str) -> Result<Rows<T>, BatchError> {
    let Map::Array(data) = map else {
        return Err(BatchError::Kind {
            map: name,
            expected: "plain array",
        });
    };
    read(data, name, 1, size_of::<T>())
}

/// Every entry of the per-CPU array `map`, each key's values in CPU order.
pub fn per_cpu_array<T: bytemuck::Pod>(
    map: &Map,
    name: &'static str,
) -> Result<Rows<T>, BatchError> {
    let Map::PerCpuArray(data) = map else {
        return Err(BatchError::Kind {
            map: name,
            expected: "per-CPU array",
        });
    };
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| BatchError::Cpus(e))?;
    // The kernel lays each CPU's value out 8-byte aligned.
    read(data, name, cpus, size_of::<T>().next_multiple_of(8))
}

fn read<T: bytemuck::Pod>(
    data: &aya::maps::MapData,
    name: &'static str,
    per_key: usize,
    stride: usize,
) -> Result<Rows<T>, BatchError> {
    let info = data
        .info()
        .map_err(|source| BatchError::Info { map: name, source })?;
    if info.value_size() as usize != size_of::<T>() {
        return Err(BatchError::ValueSize {
            map: name,
            size: info.value_size(),
            expected: size_of::<T>(),
        });
    }
    let entries = info.max_entries();
    let mut keys = vec![0u32; entries as usize];
    let mut raw = vec![0u8; entries as usize * per_key * stride];
    let mut out_batch = 0u32;
    let mut attr = Batch {
        in_batch: 0,
        out_batch: std::ptr::from_mut(&mut out_batch) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: raw.as_mut_ptr() as u64,
        count: entries,
        map_fd: data.fd().as_fd().as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // An array's batch starts at key 0 and, asked for every entry, ends the
    // map: ENOENT says so with the entries it did copy.
    match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(source) => return Err(BatchError::Lookup { map: name, source }),
    }
    if attr.count != entries {
        return Err(BatchError::Short {
            map: name,
            read: attr.count,
            entries,
        });
    }
    let mut values = vec![T::zeroed(); entries as usize * per_key];
    for (index, &key) in keys.iter().enumerate() {
        if key >= entries {
            return Err(BatchError::Key {
                map: name,
                key,
                entries,
            });
        }
        for cpu in 0..per_key {
            let at = (index * per_key + cpu) * stride;
            values[key as usize * per_key + cpu] =
                bytemuck::pod_read_unaligned(&raw[at..at + size_of::<T>()]);
        }
    }
    Ok(Rows { per_key, values })
}
