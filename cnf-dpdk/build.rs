//! Generates the bindings against the system libdpdk (pkg-config `libdpdk`) and builds the shim.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cnf-dpdk needs the system DPDK (pkg-config module `libdpdk`, version ≥ 22.11). \
                 On Debian/Ubuntu install it with `apt-get install libdpdk-dev pkg-config` \
                 (scripts/install-deps.sh does). pkg-config said: {e}"
            );
            std::process::exit(1);
        }
    };
    // DPDK's flags (-include rte_config.h, -march=…) are needed by its headers.
    let mut clang_args: Vec<String> = lib
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();
    let raw = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut it = raw.split_whitespace();
    while let Some(a) = it.next() {
        if a == "-include" {
            if let Some(f) = it.next() {
                clang_args.push("-include".into());
                clang_args.push(f.into());
            }
        } else if a.starts_with("-march") || a.starts_with("-D") {
            clang_args.push(a.into());
        }
    }

    // rte_vdev_init/uninit live in the vdev bus driver, which pkg-config does not list.
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");

    let mut cc = cc::Build::new();
    cc.file("shim/shim.c").warnings(false).opt_level(2);
    for a in &clang_args {
        cc.flag(a);
    }
    cc.compile("cnf_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(&clang_args)
        .allowlist_function(
            "rte_eal_init|rte_eal_cleanup|rte_strerror|rte_socket_id|rte_pktmbuf_pool_create|\
             rte_mempool_free|rte_mempool_avail_count|rte_vdev_init|rte_vdev_uninit|\
             rte_eth_dev_get_port_by_name|rte_eth_dev_configure|rte_eth_rx_queue_setup|\
             rte_eth_tx_queue_setup|rte_eth_dev_start|rte_eth_dev_stop|rte_eth_dev_close|\
             rte_eth_stats_get|rte_eth_promiscuous_enable|rte_eth_macaddr_get|cnf_dpdk_.*",
        )
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE|RTE_PKTMBUF_HEADROOM")
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .derive_default(true)
        .prepend_enum_name(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| panic!("bindgen on the DPDK headers failed: {e}"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| panic!("writing bindings.rs: {e}"));
}
