//! libFuzzer's entry: every input goes to the target named by CLUSTERD_FUZZ_TARGET
//! (one of `clusterd::fuzz::TARGETS`). One binary for all targets keeps the build to a
//! single link; ./fuzz/run sets the variable and the target's corpus.
#![no_main]

use std::sync::OnceLock;

fn target() -> &'static str {
    static TARGET: OnceLock<String> = OnceLock::new();
    TARGET.get_or_init(|| {
        let name = std::env::var("CLUSTERD_FUZZ_TARGET").unwrap_or_default();
        assert!(
            clusterd::fuzz::TARGETS.contains(&name.as_str()),
            "CLUSTERD_FUZZ_TARGET must be one of {:?}, not {name:?}",
            clusterd::fuzz::TARGETS
        );
        name
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clusterd::fuzz::run(target(), data);
});
