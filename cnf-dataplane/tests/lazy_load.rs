//! An engine loaded lazily (`Engine::load_lazily`, what `compose::start` and so the daemon start with)
//! verifies only the programs of the chains it applies: a later chain with a function of a kind not
//! loaded yet has that program loaded before its generation switch, and the new function runs.

mod common;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{ChainConfig, Engine, FunctionConfig, FunctionKind, MonitorConfig};
use common::*;

fn monitor() -> FunctionConfig {
    FunctionConfig::new(
        "mon",
        FunctionKind::Monitor(MonitorConfig {
            sample_rate: 0,
            ..Default::default()
        }),
    )
}

fn chain(functions: Vec<FunctionConfig>) -> ChainConfig {
    ChainConfig {
        functions,
        ..Default::default()
    }
}

#[test]
fn a_lazily_loaded_engine_loads_a_new_functions_program_before_the_switch() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let mut e = match Engine::load_lazily(hook) {
            Ok(e) => e,
            Err(err) => panic!("loading {hook:?} lazily: {err}"),
        };
        let v = verdicts(hook);
        let frame = Pkt::tcp("10.0.0.1", 1000, "10.0.0.2", 80).build();
        let run = |e: &Engine| e.test_run(&frame, 1).expect("test run");

        // control: a monitor alone passes the packet untouched
        let first = e.apply(&chain(vec![monitor()])).expect("apply monitor");
        let out = run(&e);
        assert_eq!((out.retval, &out.data), (v.pass, &frame), "{hook:?}");

        // the firewall's program was not loaded by the first apply: this one loads it, and the
        // packet meets the firewall's default deny (not a broken tail call)
        let second = e
            .apply(&chain(vec![monitor(), deny_all()]))
            .expect("apply monitor + firewall");
        assert_ne!(first.generation, second.generation, "{hook:?}");
        assert_eq!(run(&e).retval, v.drop, "{hook:?}");
        let fw = e.function_stats(second.instances[1]).expect("fw stats");
        assert_eq!(fw.dropped[reason::FW_DEFAULT], 1, "{hook:?}: {fw:?}");
        let counters = e.chain_counters(second.generation).expect("chain counters");
        assert_eq!(counters.broken, 0, "{hook:?}: {counters:?}");

        // and back: the monitor alone passes again
        e.apply(&chain(vec![monitor()]))
            .expect("apply monitor again");
        assert_eq!(run(&e).retval, v.pass, "{hook:?}");
    }
}
