use super::*;
use crate::runtime::elf::Library;

/// Calibrates the interpreters installed here (skipped where absent).
#[test]
#[ignore]
fn calibrates_installed_interpreters() {
    for v in [
        "3.12.1/lib/libpython3.12.so.1.0",
        "3.10.13/lib/libpython3.10.so.1.0",
    ] {
        let Some(home) = std::env::var_os("HOME") else {
            return;
        };
        let p = std::path::Path::new(&home).join(".pyenv/versions").join(v);
        if !p.exists() {
            continue;
        }
        let lib = Library::open(&p).unwrap();
        println!("{v}: {:#x?}", calibrate(&lib));
    }
    let ld = Library::open(std::path::Path::new("/lib64/ld-linux-x86-64.so.2")).unwrap();
    println!("{:?}", calibrate_dtv(&ld));
}

#[test]
#[ignore]
fn debug_members() {
    let p = std::path::Path::new("/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0");
    let lib = Library::open(p).unwrap();
    let img: &dyn Image = &lib;
    let f = img.find_bytes(b"co_filename\0");
    println!("{f:x?}");
    for s in &f {
        println!("{s:x} -> {:x?}", img.pointers_to(*s));
    }
    println!("{:?}", member(img, "co_filename", &["co_name", "co_names"]));
}
