use std::path::{Path, PathBuf};

use sluice_sdk::plugin::AbiVersion;
use sluice_sdk::Registry;

use super::loader::check_abi;
use super::{load_plugins, PluginError};

fn v(major: u32, minor: u32) -> AbiVersion {
    AbiVersion { major, minor }
}

#[test]
fn another_major_is_refused_naming_both_versions_and_the_path() {
    let path = Path::new("/opt/plugins/libticketing.so");
    let e = check_abi(v(1, 0), v(2, 0), path).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("/opt/plugins/libticketing.so"), "{msg}");
    assert!(msg.contains("plugin ABI 2.0"), "{msg}");
    assert!(msg.contains("plugin ABI 1.0"), "{msg}");
    assert!(check_abi(v(2, 0), v(1, 0), path).is_err());
}

#[test]
fn a_newer_minor_is_refused_an_older_one_accepted() {
    let path = Path::new("/p/libx.so");
    let msg = check_abi(v(1, 1), v(1, 2), path).unwrap_err().to_string();
    assert!(msg.contains("1.2") && msg.contains("1.1") && msg.contains("upgrade sluice"), "{msg}");
    check_abi(v(1, 2), v(1, 1), path).unwrap();
    check_abi(v(1, 2), v(1, 2), path).unwrap();
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let path = PathBuf::from("/nonexistent/dir/libnothing.so");
    let e = load_plugins(std::slice::from_ref(&path), &mut Registry::new()).unwrap_err();
    assert!(matches!(e, PluginError::Unreadable { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/dir/libnothing.so"), "{e}");
}

#[test]
fn a_file_that_is_not_a_library_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfake.so");
    std::fs::write(&path, "this is not an ELF file\n").unwrap();
    let e = load_plugins(std::slice::from_ref(&path), &mut Registry::new()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PluginError::NotALibrary { .. }), "{e:?}");
    assert!(msg.contains("libfake.so") && msg.contains("not a loadable library"), "{msg}");
}

#[test]
fn a_library_without_the_version_symbol_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("empty.c");
    std::fs::write(&src, "int not_a_sluice_plugin(void) { return 42; }\n").unwrap();
    let lib = dir.path().join("libempty.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("run cc to build a shared library without Sluice symbols");
    assert!(out.status.success(), "cc failed: {}", String::from_utf8_lossy(&out.stderr));
    let e = load_plugins(std::slice::from_ref(&lib), &mut Registry::new()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PluginError::MissingSymbol { symbol: "sluice_abi_version", .. }), "{e:?}");
    assert!(msg.contains("libempty.so") && msg.contains("export_plugin!"), "{msg}");
}
