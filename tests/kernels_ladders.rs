//! Every version of every kernel family in `backend::cpu::ladders()` against its reference,
//! on the family's small odd sizes. A family added to the registry is checked here with no
//! further test code.

use std::collections::HashSet;

use glassbox::backend::cpu::ladders;

#[test]
fn every_version_of_every_ladder_matches_its_reference() {
    let mut failures = Vec::new();
    for ladder in ladders() {
        for dims in &ladder.test_sizes {
            let mut work = (ladder.setup)(dims, 3);
            for (v, version) in ladder.versions.iter().enumerate() {
                work.reset();
                work.run(v);
                let error = work.error();
                if !ladder.accepts(error) {
                    failures.push(format!(
                        "{} {} at {}: error {error:e} > {:e} ({})",
                        ladder.family,
                        version.name,
                        work.size(),
                        ladder.tolerance,
                        ladder.tolerance_note
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "kernel versions disagree with their reference:\n{}", failures.join("\n"));
}

#[test]
fn ladder_check_rejects_an_output_that_was_never_computed() {
    for ladder in ladders() {
        let work = (ladder.setup)(&ladder.test_sizes[1], 3);
        // Outputs start as NaN, so checking before any run must fail.
        assert!(!ladder.accepts(work.error()), "{}: an unwritten output passed the check", ladder.family);
    }
}

#[test]
fn ladders_are_well_formed() {
    let mut families = HashSet::new();
    for ladder in ladders() {
        assert!(families.insert(ladder.family), "family {} listed twice", ladder.family);
        assert!(ladder.versions.len() >= 2, "{}: a ladder needs at least two versions", ladder.family);
        let names: HashSet<_> = ladder.versions.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), ladder.versions.len(), "{}: duplicate version names", ladder.family);
        assert!(
            ladder.versions.last().unwrap().max_flops.is_none(),
            "{}: the fastest version must run everywhere",
            ladder.family
        );
        assert!(!ladder.report_sizes.is_empty() && !ladder.test_sizes.is_empty(), "{}: sizes missing", ladder.family);
        assert!(std::path::Path::new(ladder.source).exists(), "{}: source {} not found", ladder.family, ladder.source);
        for dims in &ladder.report_sizes {
            let work = (ladder.setup)(dims, 0);
            assert!(work.flops() > 0.0 && work.bytes() > 0.0, "{} {}: empty cost model", ladder.family, work.size());
        }
    }
}
