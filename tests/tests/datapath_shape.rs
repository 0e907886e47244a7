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
