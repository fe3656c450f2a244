//! State at rest: the data directory Sluice creates and the offset store in it are readable by
//! their owner only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn data_dir_and_offsets_are_created_owner_only() {
    let w = Workdir::new();
    // Under the usual umask (022) a plain create would leave them readable by everyone.
    let cfg = w.config(
        "gen.yaml",
        "host:\n  data_dir: {dir}/state/data\npipelines:\n  - name: gen\n    \
         source: { type: generator, count: 2000 }\n    \
         sink: { type: file, path: \"{dir}/out.jsonl\" }\n    commit_interval: 100ms\n",
    );
    let mut s = w.start(&cfg);
    assert!(s.wait(Duration::from_secs(60)).success(), "{}", s.logs());
    let data = w.join("state/data");
    assert!(stored_offsets(&data, "gen").is_some(), "{}", s.logs());
    assert_eq!(mode(&w.join("state")), 0o700, "a parent Sluice created");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("offsets")), 0o700);
    assert_eq!(mode(&data.join("offsets/gen.json")), 0o600);
}
