//! Real cgroups (root here; skipped with a message elsewhere, a failure under CI):
//! a busy process in a quarter-core machine gets about a quarter of a core, its
//! CPU time is read back, and the groups are gone afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use storefront_machines::Machines;

#[test]
fn a_quarter_core_machine_gets_a_quarter_of_a_core() {
    let machines = match Machines::open("quota-test") {
        Ok(m) => m,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI: no machines: {e}");
            eprintln!("skipped: no machines here: {e}");
            return;
        }
    };
    let machine = machines.machine("busy", 0.25).unwrap();
    // A shell spinning, and a child of it spinning too: add_tree takes both.
    let mut busy = Command::new("sh")
        .args(["-c", "sh -c 'while :; do :; done' & while :; do :; done"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let moved = machine.add_tree(busy.id()).unwrap();
    assert!(moved >= 2, "moved {moved}");
    let (start, used_before) = (Instant::now(), machine.usage().unwrap());
    std::thread::sleep(Duration::from_millis(1_000));
    let used = machine.usage().unwrap() - used_before;
    let wall = start.elapsed();
    let pids = machine.pids();
    let (throttles, _) = machine.throttled().unwrap();
    // Stop the spinners (the child first: its parent's id is known).
    for pid in &pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let _ = busy.kill();
    let _ = busy.wait();
    let share = used.as_secs_f64() / wall.as_secs_f64();
    // Two spinners on a two-core host would take up to 2 cores: the quota holds
    // them to a quarter (the bounds leave room for a period's rounding).
    assert!(share > 0.1 && share < 0.4, "share {share:.3} of a core");
    assert!(throttles > 0);
    let cpu_dir = format!(
        "/sys/fs/cgroup/cpu/scalekit-storefront/quota-test-{}",
        std::process::id()
    );
    assert!(Path::new(&cpu_dir).exists());
    drop(machines);
    assert!(
        !Path::new(&cpu_dir).exists(),
        "the run's groups were removed"
    );
}

#[test]
fn bad_names_and_shares_are_refused() {
    assert!(Machines::open("no spaces").is_err());
    let Ok(machines) = Machines::open("names-test") else {
        return;
    };
    assert!(machines.machine("../escape", 0.25).is_err());
    assert!(machines.machine("app", 0.0).is_err());
    assert!(machines.machine("app", f64::NAN).is_err());
    assert!(machines.machine("app", 0.5).is_ok());
}
