//! Reading a whole map with BPF_MAP_LOOKUP_BATCH rather than a lookup per
//! entry: `vip stats` and every `/metrics` scrape read the per-range arrays
//! (10,000 ranges were about 40,000 syscalls a scrape) and the hashes of
//! declared and steered VIPs, which aya iterates with two syscalls a key (a
//! read of 65,536 of either took about 85 ms on 2 CPUs, 35 and 27 in one call:
//! BENCHMARKS.md). aya 0.14 has no batch operations.

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
    #[error("map {map} has {size}-byte keys, this vip reads {expected}")]
    KeySize {
        map: &'static str,
        size: u32,
        expected: usize,
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
    #[error("map {map}: the kernel returned more entries than the map holds ({entries})")]
    Overrun { map: &'static str, entries: u32 },
    #[error("map {map}: the kernel returned no entries and did not end the map")]
    Stalled { map: &'static str },
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

/// Every entry of a hash map, in the kernel's bucket order: for a per-CPU
/// hash, one value per possible CPU of each key.
pub struct Entries<K, V> {
    per_key: usize,
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K: Copy, V> Entries<K, V> {
    /// Each key with its values (one per CPU for a per-CPU hash).
    pub fn iter(&self) -> impl Iterator<Item = (K, &[V])> {
        self.keys
            .iter()
            .copied()
            .zip(self.values.chunks_exact(self.per_key))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Every entry of the plain hash `map`.
pub fn hash<K: bytemuck::Pod, V: bytemuck::Pod>(
    map: &Map,
    name: &'static str,
) -> Result<Entries<K, V>, BatchError> {
    let Map::HashMap(data) = map else {
        return Err(BatchError::Kind {
            map: name,
            expected: "hash",
        });
    };
    read_hash(data, name, 1, size_of::<V>(), None)
}

/// Every entry of the per-CPU hash `map`, each key's values in CPU order.
pub fn per_cpu_hash<K: bytemuck::Pod, V: bytemuck::Pod>(
    map: &Map,
    name: &'static str,
) -> Result<Entries<K, V>, BatchError> {
    per_cpu_hash_in_calls_of(map, name, None)
}

/// [`per_cpu_hash`], asking the kernel for at most `chunk` entries a call
/// (`None`: as many as the map holds, so one call ends it). A chunk smaller
/// than one of the map's buckets is refused by the kernel (ENOSPC).
pub fn per_cpu_hash_in_calls_of<K: bytemuck::Pod, V: bytemuck::Pod>(
    map: &Map,
    name: &'static str,
    chunk: Option<u32>,
) -> Result<Entries<K, V>, BatchError> {
    let Map::PerCpuHashMap(data) = map else {
        return Err(BatchError::Kind {
            map: name,
            expected: "per-CPU hash",
        });
    };
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| BatchError::Cpus(e))?;
    read_hash(data, name, cpus, size_of::<V>().next_multiple_of(8), chunk)
}

/// The map's entries, checked to be `key_size` and `value_size` bytes.
fn checked_info(
    data: &aya::maps::MapData,
    name: &'static str,
    key_size: usize,
    value_size: usize,
) -> Result<u32, BatchError> {
    let info = data
        .info()
        .map_err(|source| BatchError::Info { map: name, source })?;
    if info.key_size() as usize != key_size {
        return Err(BatchError::KeySize {
            map: name,
            size: info.key_size(),
            expected: key_size,
        });
    }
    if info.value_size() as usize != value_size {
        return Err(BatchError::ValueSize {
            map: name,
            size: info.value_size(),
            expected: value_size,
        });
    }
    Ok(info.max_entries())
}

fn read_hash<K: bytemuck::Pod, V: bytemuck::Pod>(
    data: &aya::maps::MapData,
    name: &'static str,
    per_key: usize,
    stride: usize,
    chunk: Option<u32>,
) -> Result<Entries<K, V>, BatchError> {
    let entries = checked_info(data, name, size_of::<K>(), size_of::<V>())?;
    let capacity = entries as usize;
    let chunk = chunk.unwrap_or(entries).clamp(1, entries.max(1));
    let mut raw_keys = vec![0u8; chunk as usize * size_of::<K>()];
    let mut raw_values = vec![0u8; chunk as usize * per_key * stride];
    let mut keys = Vec::new();
    let mut values = Vec::new();
    // A hash's batch position is a bucket number the kernel hands back in
    // `out_batch`; the first call passes none. Asked for as many entries as
    // the map holds, one call ends the map (ENOENT, with what it copied).
    let mut from = None;
    let mut next = 0u32;
    loop {
        let copied_so_far = keys.len();
        let (copied, ended) =
            lookup_batch(data, from, &mut next, &mut raw_keys, &mut raw_values, chunk)
                .map_err(|source| BatchError::Lookup { map: name, source })?;
        let copied = copied as usize;
        if copied > chunk as usize || copied_so_far + copied > capacity {
            return Err(BatchError::Overrun { map: name, entries });
        }
        if copied == 0 && !ended {
            return Err(BatchError::Stalled { map: name });
        }
        for index in 0..copied {
            let key_at = index * size_of::<K>();
            keys.push(bytemuck::pod_read_unaligned(
                &raw_keys[key_at..key_at + size_of::<K>()],
            ));
            for cpu in 0..per_key {
                let at = (index * per_key + cpu) * stride;
                values.push(bytemuck::pod_read_unaligned(
                    &raw_values[at..at + size_of::<V>()],
                ));
            }
        }
        if ended {
            return Ok(Entries {
                per_key,
                keys,
                values,
            });
        }
        from = Some(next);
    }
}

fn read<T: bytemuck::Pod>(
    data: &aya::maps::MapData,
    name: &'static str,
    per_key: usize,
    stride: usize,
) -> Result<Rows<T>, BatchError> {
    let entries = checked_info(data, name, size_of::<u32>(), size_of::<T>())?;
    let mut keys = vec![0u32; entries as usize];
    let mut raw = vec![0u8; entries as usize * per_key * stride];
    let mut out_batch = 0u32;
    // An array's batch starts at key 0 and, asked for every entry, ends the
    // map.
    let (copied, _) = lookup_batch(
        data,
        None,
        &mut out_batch,
        bytemuck::cast_slice_mut(&mut keys),
        &mut raw,
        entries,
    )
    .map_err(|source| BatchError::Lookup { map: name, source })?;
    if copied != entries {
        return Err(BatchError::Short {
            map: name,
            read: copied,
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

/// One BPF_MAP_LOOKUP_BATCH call of at most `count` entries into `keys` and
/// `values`, from batch position `from` (none: the map's start), the next
/// position written to `next`: the entries copied, and whether the map ended
/// (ENOENT, which comes with the entries it did copy).
fn lookup_batch(
    data: &aya::maps::MapData,
    mut from: Option<u32>,
    next: &mut u32,
    keys: &mut [u8],
    values: &mut [u8],
    count: u32,
) -> io::Result<(u32, bool)> {
    let mut attr = Batch {
        in_batch: from.as_mut().map_or(0, |at| std::ptr::from_mut(at) as u64),
        out_batch: std::ptr::from_mut(next) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: data.fd().as_fd().as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
        Ok(_) => Ok((attr.count, false)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((attr.count, true)),
        Err(e) => Err(e),
    }
}
