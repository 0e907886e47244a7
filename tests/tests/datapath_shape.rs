//! The shape of the compiled datapath, read from the object vip embeds.

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// The compiler's memory builtins, which LLVM emits as functions of their own.
const BUILTINS: [&str; 5] = ["memcpy", "memmove", "memset", "memcmp", "bcmp"];

/// Every function is inlined into its program. Under the SRSO "Safe RET"
/// mitigation each return costs about 9 ns (BENCHMARKS.md), and a function
/// LLVM chose not to inline (the tunnel path, or the body an entry point macro
/// wraps) ends up in `.text` and is reached by a BPF-to-BPF call.
#[test]
fn no_function_is_left_out_of_line_but_the_memory_builtins() {
    let file = object::File::parse(vip_userspace::datapath::embedded_object())
        .expect("the embedded datapath object is an ELF file");
    let text = file.section_by_name(".text").map(|section| section.index());
    let outlined: Vec<String> = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text)
        .filter(|symbol| text.is_some() && symbol.section_index() == text)
        .map(|symbol| symbol.name().unwrap_or("?").to_string())
        .filter(|name| !BUILTINS.contains(&name.as_str()))
        .collect();
    assert_eq!(
        outlined,
        Vec::<String>::new(),
        "functions called out of line"
    );
}

/// The programs of an object: (section kind, name) of each function symbol
/// outside `.text`.
fn programs(object: &[u8]) -> Vec<(String, String)> {
    let file = object::File::parse(object).expect("an ELF file");
    let mut programs: Vec<(String, String)> = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text)
        .filter_map(|symbol| {
            let section = file.section_by_index(symbol.section_index()?).ok()?;
            let kind = section.name().ok()?;
            (kind != ".text").then(|| (kind.to_string(), symbol.name().unwrap_or("?").to_string()))
        })
        .collect();
    programs.sort();
    programs
}

/// The instructions of program `name`, as compiled (before map relocations).
fn instructions(object: &[u8], name: &str) -> Vec<u8> {
    let file = object::File::parse(object).expect("an ELF file");
    let symbol = file
        .symbols()
        .find(|symbol| symbol.name() == Ok(name))
        .unwrap_or_else(|| panic!("{name} in the object"));
    let section = file
        .section_by_index(symbol.section_index().expect("a defined symbol"))
        .expect("its section");
    let data = section.data().expect("section data");
    let start = (symbol.address() - section.address()) as usize;
    data[start..start + symbol.size() as usize].to_vec()
}

/// The object vip embeds holds its three programs and nothing of the bench's.
#[test]
fn the_shipped_object_holds_only_vips_programs() {
    let shipped = vip_userspace::datapath::embedded_object();
    let expected: Vec<(String, String)> = [
        ("classifier", "vip_tc"),
        ("sk_lookup", "vip_sk_lookup"),
        ("xdp", "vip_xdp"),
    ]
    .map(|(kind, name)| (kind.to_string(), name.to_string()))
    .to_vec();
    assert_eq!(programs(shipped), expected);
    let file = object::File::parse(shipped).expect("an ELF file");
    assert!(
        file.symbols()
            .all(|symbol| symbol.name() != Ok(vip_common::MAP_BENCH_SAVED)),
        "the bench harness's map is in the shipped object"
    );
}

/// The bench times `vip_xdp` from its own object (which adds the
/// frame-restoring harness): the program must be the one vip ships,
/// instruction for instruction.
#[test]
fn the_bench_object_times_the_shipped_vip_xdp() {
    let shipped = vip_userspace::datapath::embedded_object();
    let bench = vip_tests::bench::bench_object();
    let names: Vec<String> = programs(&bench).into_iter().map(|(_, name)| name).collect();
    for name in [
        vip_common::PROG_BENCH_DECAP,
        vip_common::PROG_BENCH_HARNESS,
        vip_common::PROG_XDP,
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    for program in [vip_common::PROG_XDP, vip_common::PROG_TC] {
        let ours = instructions(shipped, program);
        assert!(ours.len() > 100 * 8, "{program} has {} bytes", ours.len());
        assert_eq!(
            instructions(&bench, program),
            ours,
            "{program} differs between the bench object and the shipped one"
        );
    }
}
