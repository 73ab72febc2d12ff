//! Every CUDA kernel source compiles to PTX with NVRTC (no GPU needed) and
//! defines the entry points its source declares. Needs libnvrtc on
//! LD_LIBRARY_PATH; skipped with a message without it, unless
//! PIXEL_REQUIRE_NVRTC=1 (CI) makes that a failure.
#![cfg(feature = "cuda")]

use pixel_kernels::cuda::nvrtc::{compile, compile_cubin, entry_names, nvrtc_present, SOURCES};

fn nvrtc_or_skip() -> bool {
    if nvrtc_present() {
        return true;
    }
    let required = std::env::var("PIXEL_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "PIXEL_REQUIRE_NVRTC=1 but libnvrtc could not be loaded (set LD_LIBRARY_PATH)"
    );
    eprintln!("skipping: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA NVRTC library)");
    false
}

#[test]
fn every_kernel_source_compiles_to_ptx_with_its_entries() {
    if !nvrtc_or_skip() {
        return;
    }
    // NVRTC's default architecture and the H100's (what the GPU checks use).
    for arch in [None, Some("compute_90")] {
        for (name, source) in SOURCES {
            let ptx = compile(name, arch)
                .unwrap_or_else(|e| panic!("{name}.cu ({arch:?}): {e}"))
                .to_src();
            let entries = entry_names(source);
            assert!(!entries.is_empty(), "{name}.cu declares no kernels");
            for entry in entries {
                assert!(
                    ptx.contains(&format!(".entry {entry}(")),
                    "PTX of {name}.cu ({arch:?}) has no entry {entry}"
                );
            }
        }
    }
}

#[test]
fn every_kernel_source_compiles_to_machine_code() {
    if !nvrtc_or_skip() {
        return;
    }
    // A100 and H100: what a device loads first.
    for arch in ["sm_80", "sm_90"] {
        for (name, _) in SOURCES {
            let bin = compile_cubin(name, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                bin.starts_with(b"\x7fELF"),
                "{name}.cu for {arch}: not an ELF cubin"
            );
        }
    }
}

#[test]
fn every_source_file_is_listed() {
    // Each kernel module keeps its CUDA source beside its Rust code: src/<module>/*.cu.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut on_disk: Vec<String> = Vec::new();
    for module in std::fs::read_dir(&src).expect("kernels/src").flatten() {
        let Ok(files) = std::fs::read_dir(module.path()) else {
            continue; // a plain .rs file
        };
        for p in files.flatten().map(|e| e.path()) {
            if p.extension().is_some_and(|e| e == "cu") {
                on_disk.push(p.file_stem().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = SOURCES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "kernels/src/*/*.cu and nvrtc::SOURCES differ"
    );
}

#[test]
fn no_driver_is_an_error_not_a_panic() {
    if pixel_kernels::cuda::driver_present() {
        eprintln!("skipping: a CUDA driver is present");
        return;
    }
    let err = pixel_kernels::cuda::device(0).expect_err("no driver, yet a device opened");
    assert_eq!(err.0, "no CUDA driver found");
}
