//! Replays every checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz
//! targets' entries (`clusterd::fuzz`) in a plain test build, so an input that once
//! crashed a parser (and was added to the corpus) can never crash it again unnoticed,
//! even where the fuzzer itself is not run. Every target must have a corpus.

use std::path::PathBuf;

#[test]
fn every_corpus_input_runs_through_its_target() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for target in clusterd::fuzz::TARGETS {
        let dir = root.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus of {target} ({}): {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "the corpus of {target} is empty");
        for path in &inputs {
            let data = std::fs::read(path).unwrap();
            let ok = std::panic::catch_unwind(|| clusterd::fuzz::run(target, &data));
            assert!(
                matches!(ok, Ok(true)),
                "fuzz target {target} failed on {}",
                path.display()
            );
        }
        println!("{target}: {} inputs", inputs.len());
        total += inputs.len();
    }
    println!("{total} corpus inputs replayed");
}

/// The SMTP target reaches the DATA decoder (mailin accepts the seed's envelope), so
/// the fuzzer exercises it and its split-invariance check.
#[test]
fn the_smtp_target_reaches_data() {
    let seed =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/smtp/session"))
            .unwrap();
    assert_eq!(clusterd::smtp::fuzz_session(&seed), 1);
}
