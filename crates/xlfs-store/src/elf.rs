//! Minimal ELF inspection: type description, `DT_NEEDED` and `RPATH`/`RUNPATH`.
//!
//! Only the ELF header, the program headers and the dynamic section are
//! parsed (through goblin's low-level parsers), so inspecting a large
//! unstripped library does not walk its symbol or debug tables.

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::dynamic::{Dynamic, DF_1_PIE, DT_NEEDED, DT_RPATH, DT_RUNPATH};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
use goblin::elf::Elf;

/// The four magic bytes every ELF file starts with.
pub(crate) const MAGIC: &[u8; 4] = b"\x7fELF";

/// What [`inspect`] learned about an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// e.g. "ELF64 x86-64 shared object".
    pub desc: String,
    /// `DT_NEEDED` entries in file order.
    pub needed: Vec<String>,
    /// `DT_RPATH` then `DT_RUNPATH` entries, as written (colon-separated lists).
    pub rpaths: Vec<String>,
    /// The program interpreter (`PT_INTERP`), e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interp: Option<String>,
}

/// Inspects `bytes` (a whole file). Returns `None` when it is not an ELF
/// file at all; a file with a valid ELF header whose program headers or
/// dynamic section are damaged is still described, with no `needed`.
pub fn inspect(bytes: &[u8]) -> Option<ElfInfo> {
    if !bytes.starts_with(MAGIC) {
        return None;
    }
    let hdr = Elf::parse_header(bytes).ok()?;
    let class = match hdr.e_ident[header::EI_CLASS] {
        header::ELFCLASS64 => Container::Big,
        header::ELFCLASS32 => Container::Little,
        _ => return None,
    };
    let endian = match hdr.e_ident[header::EI_DATA] {
        header::ELFDATA2LSB => Endian::Little,
        header::ELFDATA2MSB => Endian::Big,
        _ => return None,
    };
    let ctx = Ctx::new(class, endian);
    let dynamic = dynamic_info(bytes, &hdr, ctx);
    let dynamic = dynamic.unwrap_or_default();
    Some(ElfInfo {
        desc: describe(&hdr, class, dynamic.pie),
        needed: dynamic.needed,
        rpaths: dynamic.rpaths,
        interp: interpreter(bytes, &hdr, ctx),
    })
}

/// The `PT_INTERP` path, if the file has one.
fn interpreter(bytes: &[u8], hdr: &Header, ctx: Ctx) -> Option<String> {
    let phdrs = ProgramHeader::parse(bytes, hdr.e_phoff as usize, hdr.e_phnum as usize, ctx).ok()?;
    let p = phdrs.iter().find(|p| p.p_type == PT_INTERP)?;
    let start = usize::try_from(p.p_offset).ok()?;
    let raw = bytes.get(start..start.checked_add(usize::try_from(p.p_filesz).ok()?)?)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

#[derive(Default)]
struct DynamicInfo {
    needed: Vec<String>,
    rpaths: Vec<String>,
    pie: bool,
}

/// The dynamic section's entries, or `None` when the program headers or dynamic section cannot
/// be parsed.
fn dynamic_info(bytes: &[u8], hdr: &Header, ctx: Ctx) -> Option<DynamicInfo> {
    let phdrs = ProgramHeader::parse(bytes, hdr.e_phoff as usize, hdr.e_phnum as usize, ctx).ok()?;
    let has_interp = phdrs.iter().any(|p| p.p_type == PT_INTERP);
    let Some(dynamic) = Dynamic::parse(bytes, &phdrs, ctx).ok()? else {
        return Some(DynamicInfo::default());
    };
    let info = &dynamic.info;
    // `info.strtab` has already been translated from a virtual address to a
    // file offset by goblin.
    let strtab = bytes.get(info.strtab..info.strtab.checked_add(info.strsz)?)?;
    let cstr = |off: u64| -> Option<String> {
        let s = strtab.get(usize::try_from(off).ok()?..)?;
        let end = s.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    let strings = |tag| -> Vec<String> {
        dynamic
            .dyns
            .iter()
            .filter(|d| d.d_tag == tag)
            .filter_map(|d| cstr(d.d_val))
            .collect()
    };
    let mut rpaths = strings(DT_RPATH);
    rpaths.extend(strings(DT_RUNPATH));
    // Like file(1): DF_1_PIE marks a position-independent executable. Old
    // linkers did not set it; an ET_DYN with an interpreter but no SONAME is
    // then almost certainly a PIE (libc.so.6 has an interpreter *and* a
    // SONAME).
    let pie =
        hdr.e_type == header::ET_DYN && (info.flags_1 & DF_1_PIE != 0 || (has_interp && info.soname == 0));
    Some(DynamicInfo {
        needed: strings(DT_NEEDED),
        rpaths,
        pie,
    })
}

fn describe(hdr: &Header, class: Container, pie: bool) -> String {
    let bits = match class {
        Container::Big => "ELF64",
        Container::Little => "ELF32",
    };
    let arch = match hdr.e_machine {
        header::EM_X86_64 => "x86-64",
        header::EM_386 => "i386",
        header::EM_AARCH64 => "aarch64",
        header::EM_ARM => "arm",
        header::EM_RISCV => "riscv",
        header::EM_PPC64 => "ppc64",
        header::EM_PPC => "ppc",
        header::EM_S390 => "s390",
        header::EM_MIPS => "mips",
        header::EM_SPARCV9 => "sparc64",
        258 => "loongarch",
        m => header::machine_to_str(m),
    };
    let what = match hdr.e_type {
        header::ET_EXEC => "executable",
        header::ET_DYN if pie => "pie executable",
        header::ET_DYN => "shared object",
        header::ET_REL => "relocatable",
        header::ET_CORE => "core file",
        _ => "unknown type",
    };
    format!("{bits} {arch} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf() {
        assert_eq!(inspect(b"#!/bin/sh\n"), None);
        assert_eq!(inspect(b""), None);
        // Magic but truncated header: not describable.
        assert_eq!(inspect(b"\x7fELF\x02\x01"), None);
    }

    #[test]
    fn own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(exe).unwrap();
        let info = inspect(&bytes).expect("test binary is ELF");
        assert!(info.desc.starts_with("ELF"), "{}", info.desc);
        assert!(info.desc.contains("executable"), "{}", info.desc);
    }
}
